"""The benchmark-only table: what ``benchmark trading``'s INSERT floor writes, one row a request.

It exists in every database (migrations do not depend on settings) but only the floor endpoint,
served under BENCHMARK_ENDPOINTS (benchmarks/views.py), writes to it, and only in a benchmark's
throwaway database.
"""

from __future__ import annotations

from django.db import models

from trading.models import Account


class InsertFloorRow(models.Model):
    # An account reference and a short column, as an order row has (with far fewer columns):
    # the floor pays a foreign-key check where PostgreSQL makes one.
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    side = models.CharField(max_length=4)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.side} {self.created_at:%Y-%m-%d %H:%M:%S}"
