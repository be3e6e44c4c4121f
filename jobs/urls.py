"""Statement and job routes, relative to /v2/ (config/urls.py; no trailing slashes, as for the rest of the API)."""

from django.urls import URLPattern, URLResolver, path

from jobs import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("statements", api.StatementsView.as_view(), name="statements"),
    path("statements/<str:statement_id>/pdf", api.StatementPdfView.as_view(), name="statement-pdf"),
    path("jobs/<str:job_id>", api.JobDetailView.as_view(), name="job-detail"),
]
