"""Statement and job routes under /v2/ (no trailing slashes, as for the rest of the API)."""

from django.urls import URLPattern, URLResolver, path

from jobs import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("v2/statements", api.StatementsView.as_view(), name="statements"),
    path("v2/statements/<str:statement_id>/pdf", api.StatementPdfView.as_view(), name="statement-pdf"),
    path("v2/jobs/<str:job_id>", api.JobDetailView.as_view(), name="job-detail"),
]
