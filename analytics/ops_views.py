"""The staff-only ops performance page and its data endpoint (analytics/ops.py; Property 33).

The page carries its first data in the HTML (a JSON script element), so its first load is the
document, its stylesheet and its module; it then asks ``/ops/data`` for newer rows every few
seconds. Anonymous visitors are sent to the login page; signed-in users who are not staff get 403.
It links the latest ``manage.py benchmark all`` report, whose files ``ops_benchmark_file`` serves
to staff (analytics/benchmark_reports.py).
"""

from __future__ import annotations

import datetime as dt

from django.contrib.auth.views import redirect_to_login
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from analytics.benchmark_reports import (
    benchmark_report_content_type,
    benchmark_report_file_get,
    benchmark_report_latest_get,
)
from analytics.ops import DEFAULT_RANGE, OPS_GROUPS, OPS_RANGES, ops_data_get


def _refused(request: HttpRequest, *, json: bool) -> HttpResponse | None:
    if not request.user.is_authenticated:
        if json:
            return JsonResponse({"message": "sign in as staff"}, status=401)
        return redirect_to_login(request.get_full_path())
    if not request.user.is_staff:
        if json:
            return JsonResponse({"message": "staff only"}, status=403)
        return render(request, "ops_forbidden.html", status=403)
    return None


@never_cache
@require_http_methods(["GET", "HEAD"])
def ops_page(request: HttpRequest) -> HttpResponse:
    refused = _refused(request, json=False)
    if refused is not None:
        return refused
    data = ops_data_get(range_name=DEFAULT_RANGE, now=timezone.now())
    return render(
        request,
        "ops.html",
        {
            "ops_initial": {
                "groups": OPS_GROUPS,
                "ranges": list(OPS_RANGES),
                "data_url": reverse("ops-data"),
                "data": data,
            },
            "benchmark_report": benchmark_report_latest_get(),
        },
    )


@never_cache
@require_http_methods(["GET", "HEAD"])
def ops_data(request: HttpRequest) -> HttpResponse:
    refused = _refused(request, json=True)
    if refused is not None:
        return refused
    range_name = request.GET.get("range", DEFAULT_RANGE)
    if range_name not in OPS_RANGES:
        return JsonResponse({"message": f"range must be one of {', '.join(OPS_RANGES)}"}, status=400)
    since: dt.datetime | None = None
    if request.GET.get("since"):
        try:
            since = dt.datetime.fromtimestamp(float(request.GET["since"]), tz=dt.UTC)
        except (ValueError, OverflowError, OSError):
            return JsonResponse({"message": "since must be a Unix time in seconds"}, status=400)
    return JsonResponse(ops_data_get(range_name=range_name, now=timezone.now(), since=since))


@never_cache
@require_http_methods(["GET", "HEAD"])
def ops_benchmark_file(request: HttpRequest, name: str) -> HttpResponseBase:
    """A file of the latest benchmark report (report.md, report.json or a plot), to staff only."""
    refused = _refused(request, json=False)
    if refused is not None:
        return refused
    path = benchmark_report_file_get(name=name)
    if path is None:
        raise Http404("no such file in the latest benchmark report")
    return FileResponse(path.open("rb"), content_type=benchmark_report_content_type(name=name))
