"""Forms of the game pages: a game's rules as an organiser fills them in, and a join by code.

The form takes every rule ``/v2/games`` takes (trading/api/serializers_games.py), in a browser's
units: dollars, a percent of equity, local date and time in UTC. What a browser can get wrong in
one request is checked here; the domain's rules (the end after the start, a plan that exists...)
stay in ``services.game_create`` and ``services.game_update``, whose messages the views attach to
the form.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django import forms

from trading.models import GAME_ANNOUNCEMENT_MAX_LENGTH, CommissionPlan, Game, OrderClass, OrderType
from trading.services import GameRules

# <input type=datetime-local> sends "2026-12-07T09:30"; the pages say the times are UTC.
DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"]


class _DateTimeLocalInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self) -> None:
        super().__init__(format="%Y-%m-%dT%H:%M")


class GameRulesForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))
    starts_at = forms.DateTimeField(
        label="Starts (UTC)", input_formats=DATETIME_FORMATS, widget=_DateTimeLocalInput()
    )
    ends_at = forms.DateTimeField(
        label="Ends (UTC)", input_formats=DATETIME_FORMATS, widget=_DateTimeLocalInput()
    )
    starting_cash = forms.DecimalField(
        label="Starting cash ($)",
        min_value=Decimal(0),
        max_digits=14,
        decimal_places=2,
        initial=Decimal("100000.00"),
        help_text="What each player's game account opens with.",
    )
    commission_plan = forms.ModelChoiceField(
        queryset=CommissionPlan.objects.all(),
        required=False,
        empty_label="The operator's current plan",
    )
    allowed_order_types = forms.MultipleChoiceField(
        choices=OrderType.choices,
        initial=list(OrderType.values),
        widget=forms.CheckboxSelectMultiple,
    )
    allowed_order_classes = forms.MultipleChoiceField(
        choices=OrderClass.choices,
        initial=[OrderClass.SIMPLE],
        widget=forms.CheckboxSelectMultiple,
        help_text="Simple orders are always allowed.",
    )
    shorting_allowed = forms.BooleanField(label="Short selling allowed", required=False)
    max_position_percent = forms.DecimalField(
        label="Largest position (% of equity)",
        required=False,
        min_value=Decimal("0.01"),
        max_value=Decimal(100),
        max_digits=5,
        decimal_places=2,
        help_text="Checked on the position's value after the fill; empty: no limit.",
    )
    late_joining_allowed = forms.BooleanField(
        label="Players may join after the start", required=False, initial=True
    )
    self_reset_allowed = forms.BooleanField(label="Players may reset their game account", required=False)
    visibility = forms.ChoiceField(
        choices=[
            (Game.Visibility.PUBLIC, "Public: listed, anyone may join"),
            (Game.Visibility.INVITE_ONLY, "Invite only: joined by its link or code"),
        ],
        initial=Game.Visibility.PUBLIC,
        widget=forms.RadioSelect,
    )
    player_cap = forms.IntegerField(
        label="Player cap", required=False, min_value=1, max_value=1_000_000, help_text="Empty: no cap."
    )

    def clean_allowed_order_classes(self) -> list[str]:
        classes: list[str] = self.cleaned_data.get("allowed_order_classes") or []
        # The service refuses a game without simple orders; a box left unticked should not.
        return sorted({*classes, OrderClass.SIMPLE})

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        starts, ends = cleaned.get("starts_at"), cleaned.get("ends_at")
        if starts and ends and ends <= starts:
            self.add_error("ends_at", "The end must be after the start.")
        return cleaned

    def rules(self) -> GameRules:
        """The valid form as the service takes it."""
        data = self.cleaned_data
        percent: Decimal | None = data["max_position_percent"]
        plan: CommissionPlan | None = data["commission_plan"]
        return GameRules(
            name=data["name"],
            description=data["description"],
            starts_at=_utc(data["starts_at"]),
            ends_at=_utc(data["ends_at"]),
            starting_cash_cents=int(data["starting_cash"] * 100),
            commission_plan_id=plan.pk if plan is not None else None,
            allowed_order_types=tuple(data["allowed_order_types"]),
            allowed_order_classes=tuple(data["allowed_order_classes"]),
            shorting_allowed=data["shorting_allowed"],
            max_position_share_bp=None if percent is None else int(percent * 100),
            late_joining_allowed=data["late_joining_allowed"],
            self_reset_allowed=data["self_reset_allowed"],
            visibility=data["visibility"],
            player_cap=data["player_cap"],
        )

    @classmethod
    def initial_of(cls, game: Game) -> dict[str, Any]:
        """A game's rules as the form's initial values (the manage page's edit form)."""
        return {
            "name": game.name,
            "description": game.description,
            "starts_at": game.starts_at.astimezone(dt.UTC).replace(tzinfo=None),
            "ends_at": game.ends_at.astimezone(dt.UTC).replace(tzinfo=None),
            "starting_cash": Decimal(game.starting_cash_cents) / 100,
            "commission_plan": game.commission_plan_id,
            "allowed_order_types": list(game.allowed_order_types),
            "allowed_order_classes": list(game.allowed_order_classes),
            "shorting_allowed": game.shorting_allowed,
            "max_position_percent": (
                None if game.max_position_share_bp is None else Decimal(game.max_position_share_bp) / 100
            ),
            "late_joining_allowed": game.late_joining_allowed,
            "self_reset_allowed": game.self_reset_allowed,
            "visibility": game.visibility,
            "player_cap": game.player_cap,
        }


def _utc(value: dt.datetime) -> dt.datetime:
    # The form's fields are read in the current time zone; the pages say UTC, so a naive or
    # differently zoned value is taken as the wall-clock time in UTC.
    return value.replace(tzinfo=dt.UTC)


class GameAnnouncementForm(forms.Form):
    text = forms.CharField(
        label="Announcement",
        max_length=GAME_ANNOUNCEMENT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Shown on the game's page to its players.",
    )


class GameJoinForm(forms.Form):
    invite_code = forms.CharField(
        max_length=64, required=False, help_text="Invite-only games: the code from the organiser's link."
    )
