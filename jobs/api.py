"""``/v2/statements`` and ``/v2/jobs``: heavy work answers 202 at once and runs in a worker; the
job's status is pollable and the PDF downloads when ready (Properties 10 and 27,
docs/properties.md).

Views validate, call one service or selector, and shape the answer; errors take Alpaca's shape
through the project's exception handler. Another user's job or statement is a 404, the same as a
missing one, so ids cannot be probed.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from analytics import statements
from analytics.serializers import StatementSerializer
from jobs import selectors, services
from jobs.models import JobRun
from trading.api.authentication import request_account_or_none
from trading.api.serializers import rfc3339
from trading.api.views_base import TradingAPIView, parse_body, request_account, with_errors
from trading.errors import NotFound


class StatementRequestSerializer(serializers.Serializer[Any]):
    period = serializers.RegexField(
        r"^[0-9]{4}-(0[1-9]|1[0-2])$",
        help_text="A finished month, YYYY-MM",
        error_messages={"invalid": "period must be a month as YYYY-MM, e.g. 2026-09"},
    )


class JobSerializer(serializers.Serializer[Any]):
    job_id = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["queued", "running", "succeeded", "failed"])
    attempts = serializers.IntegerField()
    error = serializers.CharField(allow_null=True)
    statement_id = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    status_url = serializers.CharField()

    @staticmethod
    def shape(job: JobRun, request: Request) -> dict[str, Any]:
        return {
            "job_id": str(job.pk),
            "name": job.name,
            "status": job.status,
            "attempts": job.attempts,
            "error": job.error or None,
            "statement_id": job.result.get("statement_id"),
            "created_at": rfc3339(job.created_at),
            "started_at": rfc3339(job.started_at),
            "finished_at": rfc3339(job.finished_at),
            "status_url": request.build_absolute_uri(reverse("job-detail", args=[job.pk])),
        }


def _viewer(request: Request) -> tuple[uuid.UUID | None, bool]:
    account = request_account_or_none(request)
    return (account.pk if account is not None else None), bool(request.user.is_staff)


class StatementsView(TradingAPIView):
    @extend_schema(
        operation_id="statements_list", responses=with_errors({200: StatementSerializer(many=True)}, 403)
    )
    def get(self, request: Request) -> Response:
        listed = statements.statements_list(account_id=request_account(request).pk)
        return Response([StatementSerializer.shape(statement, request) for statement in listed])

    @extend_schema(
        operation_id="statements_request",
        request=StatementRequestSerializer,
        responses=with_errors({202: JobSerializer}),
        description="Queue the statement of a finished month; poll status_url, then download the PDF.",
    )
    def post(self, request: Request) -> Response:
        body = parse_body(StatementRequestSerializer, request)
        job = services.statement_request(account_id=request_account(request).pk, period=body["period"])
        return Response(JobSerializer.shape(job, request), status=status.HTTP_202_ACCEPTED)


class JobDetailView(TradingAPIView):
    @extend_schema(operation_id="jobs_retrieve", responses=with_errors({200: JobSerializer}))
    def get(self, request: Request, job_id: str) -> Response:
        account_id, staff = _viewer(request)
        job = selectors.job_run_get(job_id=job_id, account_id=account_id, staff=staff)
        return Response(JobSerializer.shape(job, request))


class StatementPdfView(TradingAPIView):
    @extend_schema(
        operation_id="statements_pdf",
        responses={(200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY, description="the PDF")},
    )
    def get(self, request: Request, statement_id: str) -> FileResponse:
        account_id, staff = _viewer(request)
        statement = statements.statement_get(statement_id=statement_id, account_id=account_id, staff=staff)
        try:
            handle = statement.pdf.open("rb")
        except FileNotFoundError:
            raise NotFound("statement file is missing") from None
        return FileResponse(
            handle,
            content_type="application/pdf",
            as_attachment=True,
            filename=f"statement-{statement.period}-{statement.account_id}.pdf",
        )
