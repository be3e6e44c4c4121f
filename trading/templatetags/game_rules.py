"""Filters the game pages write a game's rules with: money from cents, a share from basis points."""

from __future__ import annotations

from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def dollars(cents: int | None) -> str:
    """Cents as dollars with thousands separators: 10000000 -> "100,000.00"."""
    if cents is None:
        return "—"
    return f"{Decimal(cents) / 100:,.2f}"


@register.filter
def bp_percent(basis_points: int | None) -> str:
    """Basis points as a percent with two decimals: 1250 -> "12.50"."""
    if basis_points is None:
        return "—"
    return f"{Decimal(basis_points) / 100:.2f}"
