"""The write side's data: assets, accounts, keys, orders, fills, positions, ledger and prices.

Money is integer cents, prices integer 1/10,000 dollars and quantities integer 1/10^9 shares
(trading/units.py). Invariants that matter under concurrency are database constraints, so they hold
whichever process writes.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from trading.fields import EpochMicrosecondsField

if TYPE_CHECKING:
    from trading.events import OrderState


class Exchange(models.TextChoices):
    # Alpaca's venue list: alpaca-py rejects any other value.
    AMEX = "AMEX"
    ARCA = "ARCA"
    BATS = "BATS"
    NYSE = "NYSE"
    NASDAQ = "NASDAQ"
    NYSEARCA = "NYSEARCA"
    OTC = "OTC"


class Asset(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    symbol = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=200)
    sector = models.CharField(max_length=64, db_index=True)
    exchange = models.CharField(max_length=16, choices=Exchange.choices, default=Exchange.NYSE)
    asset_class = models.CharField(max_length=16, default="us_equity", editable=False)
    active = models.BooleanField(default=True)
    tradable = models.BooleanField(default=True)
    # Every asset may be sold short unless an operator says otherwise (docs/architecture.md,
    # Short selling): the simulator has no borrow to run out of.
    shortable = models.BooleanField(default=True)
    easy_to_borrow = models.BooleanField(default=True)
    marginable = models.BooleanField(default=False)
    halted = models.BooleanField(default=False, help_text="Frozen by an operator: no ticks, no new orders.")
    initial_price_units = models.BigIntegerField(default=1_000_000, help_text="Seed price in 1/10,000 $.")

    class Meta:
        ordering = ["symbol"]

    def __str__(self) -> str:
        return self.symbol


class Account(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # A user holds several accounts: one default (opened at sign-up) and others beside it, each
    # with its own cash, orders, keys and limits (docs/architecture.md, Accounts).
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="accounts")
    is_default = models.BooleanField(default=False)
    account_number = models.CharField(max_length=16, unique=True)
    cash_cents = models.BigIntegerField(default=0)
    # What open buy and opening short sell orders hold back, plus the 150 % initial margin of open
    # shorts (trading/margin.py); buying power is cash minus this.
    reserved_cents = models.BigIntegerField(default=0)
    shorting_enabled = models.BooleanField(default=False)
    trading_suspended = models.BooleanField(default=False)
    trade_confirm_email = models.CharField(max_length=8, default="none")
    created_at = models.DateTimeField(auto_now_add=True)
    reset_at = models.DateTimeField(null=True, blank=True, help_text="Returns are measured from here.")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(cash_cents__gte=0), name="account_cash_not_negative"),
            models.CheckConstraint(condition=Q(reserved_cents__gte=0), name="account_reserved_not_negative"),
            models.CheckConstraint(
                condition=Q(cash_cents__gte=F("reserved_cents")), name="account_reserved_within_cash"
            ),
            models.UniqueConstraint(
                fields=["user"], condition=Q(is_default=True), name="account_one_default_per_user"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_number} ({self.user})"

    @property
    def buying_power_cents(self) -> int:
        return self.cash_cents - self.reserved_cents


class UsernameSkeleton(models.Model):
    """What a user's name looks like (trading/usernames.py), unique across users: names that
    differ only by case, compatibility forms or confusable characters cannot both be taken.

    Every user has one, kept current when the username is set or changed (trading/signals.py),
    except a user whose name already collided with an older one's when this table was created
    (migration 0002): that user keeps the name and logs in as before, but holds no skeleton.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="username_skeleton"
    )
    # NFKC and case folding can make a 150-character name several times longer.
    skeleton = models.TextField(unique=True)

    def __str__(self) -> str:
        return self.skeleton


class ApiKey(models.Model):
    key_id = models.CharField(max_length=32, primary_key=True)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_keys")
    label = models.CharField(max_length=100, blank=True)
    # HMAC-SHA256 of the secret under SECRET_KEY: a slow password hash would cost every request.
    secret_hmac = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return self.key_id

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class OrderSide(models.TextChoices):
    BUY = "buy"
    SELL = "sell"


class PositionIntent(models.TextChoices):
    """What an order does to its position, as Alpaca's ``position_intent``: inferred from the
    position when placed, and checked against the one a client sends."""

    BUY_TO_OPEN = "buy_to_open"
    BUY_TO_CLOSE = "buy_to_close"
    SELL_TO_OPEN = "sell_to_open"
    SELL_TO_CLOSE = "sell_to_close"


CLOSING_INTENTS = (PositionIntent.BUY_TO_CLOSE, PositionIntent.SELL_TO_CLOSE)


class OrderType(models.TextChoices):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"
    TRAILING_STOP = "trailing_stop"


class TimeInForce(models.TextChoices):
    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    # The opening and closing auctions: only with MARKET_HOURS=xnys (README, Order rules).
    OPG = "opg"
    CLS = "cls"


AUCTION_TIME_IN_FORCE = (TimeInForce.OPG, TimeInForce.CLS)


class OrderClass(models.TextChoices):
    SIMPLE = "simple"
    # An entry whose take-profit and stop-loss legs activate when it fills (README, Advanced orders).
    BRACKET = "bracket"
    # Two exit orders (a take-profit limit and its stop-loss leg): one ending cancels the other.
    OCO = "oco"
    # An entry whose one leg activates when it fills.
    OTO = "oto"


class OrderStatus(models.TextChoices):
    # Placed while the session is closed (MARKET_HOURS=xnys): taken, routed at the next open.
    ACCEPTED = "accepted"
    # A leg waiting for its entry to fill: it holds nothing and is not in the market's book.
    HELD = "held"
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REPLACED = "replaced"
    REJECTED = "rejected"


OPEN_ORDER_STATUSES = (
    OrderStatus.ACCEPTED,
    OrderStatus.HELD,
    OrderStatus.NEW,
    OrderStatus.PARTIALLY_FILLED,
)


class Order(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="orders")
    client_order_id = models.CharField(max_length=48)
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="orders")
    side = models.CharField(max_length=4, choices=OrderSide.choices)
    position_intent = models.CharField(max_length=16, choices=PositionIntent.choices)
    type = models.CharField(max_length=16, choices=OrderType.choices)
    time_in_force = models.CharField(max_length=4, choices=TimeInForce.choices)
    # Quantity units (1/10^9 share). A notional order is sized when placed (docs/architecture.md,
    # Fractional and notional orders): qty is what it buys or sells, notional what was asked.
    qty = models.BigIntegerField()
    notional_cents = models.BigIntegerField(null=True, blank=True)
    limit_price_units = models.BigIntegerField(null=True, blank=True)
    stop_price_units = models.BigIntegerField(null=True, blank=True)
    trail_price_units = models.BigIntegerField(null=True, blank=True)
    # Trail percent in 1/10,000 of a percent (1.5 % -> 15,000).
    trail_percent_units = models.BigIntegerField(null=True, blank=True)
    # Best price seen since a trailing stop was placed: the high for sells, the low for buys.
    high_water_mark_units = models.BigIntegerField(null=True, blank=True)
    # When a stop_limit's stop was crossed and it became a resting limit order.
    stop_triggered_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=OrderStatus.choices, default=OrderStatus.NEW)
    filled_qty = models.BigIntegerField(default=0)
    filled_avg_price_units = models.BigIntegerField(null=True, blank=True)
    reserved_cents = models.BigIntegerField(default=0)
    extended_hours = models.BooleanField(default=False)
    order_class = models.CharField(max_length=8, choices=OrderClass.choices, default=OrderClass.SIMPLE)
    # A leg's entry (bracket, oto) or, for an oco pair, the take-profit order its stop-loss leg
    # belongs to (docs/architecture.md, Advanced orders).
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="legs")
    replaces = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaced_by"
    )
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Day orders expire at the day boundary."
    )
    # Both stamped by placement with its own instant (trading.services), so an order is never
    # updated before it was created and a test's injected clock holds; not auto_now_add, which
    # would overwrite the instant given with the wall clock's at save().
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Set by every write that changes the order (UPDATEs name it), not by save(): an order that
    # fills as it is placed is inserted once with its fill's instant (trading.services).
    updated_at = models.DateTimeField(default=timezone.now)
    submitted_at = models.DateTimeField()
    filled_at = models.DateTimeField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    replaced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-submitted_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "client_order_id"], name="order_client_id_unique"),
            models.CheckConstraint(condition=Q(qty__gt=0), name="order_qty_positive"),
            models.CheckConstraint(
                condition=Q(filled_qty__gte=0) & Q(filled_qty__lte=F("qty")), name="order_fill_within_qty"
            ),
            models.CheckConstraint(condition=Q(reserved_cents__gte=0), name="order_reserved_not_negative"),
            models.CheckConstraint(
                condition=Q(notional_cents__isnull=True) | Q(notional_cents__gt=0),
                name="order_notional_positive",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "submitted_at"], name="order_account_submitted_idx"),
            models.Index(fields=["account", "status"], name="order_account_status_idx"),
            models.Index(fields=["status", "asset"], name="order_status_asset_idx"),
        ]

    # Set by trading.services.order_place: the order as accepted, before any fill at placement.
    accepted_state: OrderState | None = None
    # Set by trading.services.order_place: its legs as accepted (held), by order id.
    accepted_leg_states: dict[str, OrderState] | None = None
    # Set by trading.selectors: an advanced order's legs, read for a whole list in one query.
    leg_orders: list[Order] | None = None

    def __str__(self) -> str:
        return f"{self.side} {self.qty} {self.asset_id} {self.type} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_ORDER_STATUSES


class Fill(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="fills")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="fills")
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="fills")
    side = models.CharField(max_length=4, choices=OrderSide.choices)
    qty = models.BigIntegerField()
    price_units = models.BigIntegerField()
    # Price x qty in cents as the ledger moved it: SQL sums this, never price x qty, which
    # overflows 64 bits in quantity units.
    value_cents = models.BigIntegerField()
    commission_cents = models.BigIntegerField(default=0)
    # Realised P&L of the shares this fill closed, in cents (0 for fills that open a position).
    realized_pl_cents = models.BigIntegerField(default=0)
    # The tick the price came from, so a fill can be traced to a stored tick.
    tick_seq = models.BigIntegerField(null=True, blank=True)
    filled_at = models.DateTimeField()

    class Meta:
        ordering = ["-filled_at", "-id"]
        indexes = [models.Index(fields=["account", "filled_at"], name="fill_account_time_idx")]
        constraints = [models.CheckConstraint(condition=Q(qty__gt=0), name="fill_qty_positive")]

    def __str__(self) -> str:
        return f"{self.side} {self.qty} @ {self.price_units}"


class Position(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="positions")
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="positions")
    # Signed: negative is a short, only possible where shorting is enabled.
    qty = models.BigIntegerField(default=0)
    # Shares held back by open closing orders (sells of a long, buys covering a short), so two
    # resting orders cannot close the same share, nor together carry the position past zero.
    qty_held = models.BigIntegerField(default=0)
    # Cost of the open shares in cents (negative for shorts: proceeds received).
    cost_basis_cents = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["asset__symbol"]
        constraints = [
            models.UniqueConstraint(fields=["account", "asset"], name="position_account_asset_unique"),
            models.CheckConstraint(condition=Q(qty_held__gte=0), name="position_held_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.qty} {self.asset_id}"


class CashEntry(models.Model):
    """One movement of cash; an account's cash is the sum of its entries."""

    class Kind(models.TextChoices):
        DEPOSIT = "deposit", "Opening deposit"
        GRANT = "grant", "Cash grant"
        RESET = "reset", "Account reset"
        BUY = "buy", "Purchase"
        SELL = "sell", "Sale"
        COMMISSION = "commission", "Commission"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="cash_entries")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount_cents = models.BigIntegerField()
    fill = models.ForeignKey(
        Fill, null=True, blank=True, on_delete=models.CASCADE, related_name="cash_entries"
    )
    memo = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "cash entries"
        indexes = [models.Index(fields=["account", "created_at"], name="cash_account_time_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount_cents}"


class CommissionPlan(models.Model):
    """An operator-set commission schedule; the newest active plan applies, else settings."""

    name = models.CharField(max_length=100)
    per_order_cents = models.BigIntegerField(default=0)
    per_share_centi_cents = models.BigIntegerField(default=0, help_text="Hundredths of a cent per share.")
    minimum_cents = models.BigIntegerField(default=0)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class StockPriceHistory(models.Model):
    """One tick: a trade and the quote prevailing with it, numbered per symbol."""

    # Keyed by (symbol, seq), with no row id: on SQLite the table is WITHOUT ROWID, so the rows
    # live in the key's own B-tree and the key is not stored twice (docs/architecture.md, Storage).
    pk = models.CompositePrimaryKey("symbol", "seq")
    symbol = models.CharField(max_length=16)
    seq = models.BigIntegerField()
    price_units = models.BigIntegerField()
    size = models.IntegerField()
    bid_units = models.BigIntegerField()
    bid_size = models.IntegerField()
    ask_units = models.BigIntegerField()
    ask_size = models.IntegerField()
    # Integer microseconds: the biggest table's timestamp, in the row and in its index
    # (docs/architecture.md, Storage).
    recorded_at = EpochMicrosecondsField()

    class Meta:
        verbose_name = "tick"
        # No index on recorded_at alone: retention deletes symbol by symbol along this one
        # (config/retention.py, partition_field), which Alpaca's time ranges need anyway.
        indexes = [models.Index(fields=["symbol", "recorded_at"], name="tick_symbol_time_idx")]

    def __str__(self) -> str:
        return f"{self.symbol}#{self.seq}"


class BarFields(models.Model):
    symbol = models.CharField(max_length=16)
    start = models.DateTimeField()
    open_units = models.BigIntegerField()
    high_units = models.BigIntegerField()
    low_units = models.BigIntegerField()
    close_units = models.BigIntegerField()
    volume = models.BigIntegerField()
    trade_count = models.IntegerField()
    vwap_units = models.BigIntegerField()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.symbol}@{self.start:%Y-%m-%d %H:%M}"


class MinuteBar(BarFields):
    # Integer microseconds, as the ticks' (docs/architecture.md, Storage).
    start = EpochMicrosecondsField()

    class Meta:
        # No index on start alone: every read names its symbols, and retention deletes symbol by
        # symbol along this one (docs/architecture.md, Storage).
        constraints = [models.UniqueConstraint(fields=["symbol", "start"], name="minute_bar_unique")]


class DailyBar(BarFields):
    class Meta:
        constraints = [models.UniqueConstraint(fields=["symbol", "start"], name="daily_bar_unique")]


class Watchlist(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="watchlists")
    name = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [models.UniqueConstraint(fields=["account", "name"], name="watchlist_name_unique")]

    def __str__(self) -> str:
        return self.name


class WatchlistEntry(models.Model):
    watchlist = models.ForeignKey(Watchlist, on_delete=models.CASCADE, related_name="entries")
    asset = models.ForeignKey(Asset, on_delete=models.CASCADE)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        constraints = [models.UniqueConstraint(fields=["watchlist", "asset"], name="watchlist_entry_unique")]

    def __str__(self) -> str:
        return f"{self.watchlist_id}:{self.asset_id}"


def _invite_code() -> str:
    return secrets.token_urlsafe(16)


class Game(models.Model):
    """A competition with its own rules (docs/architecture.md, Games): each player trades a game
    account of their own, opened when they join, and order placement enforces the rules."""

    class Visibility(models.TextChoices):
        PUBLIC = "public"
        INVITE_ONLY = "invite_only"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    organiser = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="organised_games"
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    # Set when the game ends early; the game is over at whichever of the two comes first.
    ended_at = models.DateTimeField(null=True, blank=True)
    starting_cash_cents = models.BigIntegerField()
    # None: the operator's current plan (or settings), as for any account.
    commission_plan = models.ForeignKey(
        CommissionPlan, null=True, blank=True, on_delete=models.PROTECT, related_name="games"
    )
    allowed_order_types = models.JSONField(default=list)
    allowed_order_classes = models.JSONField(default=list)
    shorting_allowed = models.BooleanField(default=False)
    # Largest position value after a fill, in basis points of the account's equity; None: no limit.
    max_position_share_bp = models.PositiveIntegerField(null=True, blank=True)
    late_joining_allowed = models.BooleanField(default=True)
    self_reset_allowed = models.BooleanField(default=False)
    visibility = models.CharField(max_length=16, choices=Visibility.choices, default=Visibility.PUBLIC)
    invite_code = models.CharField(max_length=32, unique=True, default=_invite_code, editable=False)
    player_cap = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="game_ends_after_start"),
            models.CheckConstraint(condition=Q(starting_cash_cents__gte=0), name="game_cash_not_negative"),
            models.CheckConstraint(
                condition=Q(max_position_share_bp__isnull=True) | Q(max_position_share_bp__gt=0),
                name="game_position_share_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def closes_at(self) -> dt.datetime:
        return min(self.ends_at, self.ended_at) if self.ended_at is not None else self.ends_at

    def is_open_at(self, now: dt.datetime) -> bool:
        return self.starts_at <= now < self.closes_at()


class GamePlayer(models.Model):
    game = models.ForeignKey(Game, on_delete=models.CASCADE, related_name="players")
    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="game_player")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="game_players")
    joined_at = models.DateTimeField()
    removed_at = models.DateTimeField(null=True, blank=True)
    # The player's own no_shorting (PATCH /v2/account/configurations). The account's
    # shorting_enabled is this under the game's ceiling, and a ceiling forbidding shorts hides it:
    # kept apart so a rule edit recomputes shorting_enabled without losing the player's choice.
    no_shorting = models.BooleanField(default=False)

    class Meta:
        ordering = ["joined_at", "id"]
        constraints = [models.UniqueConstraint(fields=["game", "user"], name="game_player_once_per_game")]

    def __str__(self) -> str:
        return f"{self.user} in {self.game}"


GAME_ANNOUNCEMENT_MAX_LENGTH = 2000


class GameAnnouncement(models.Model):
    """A message from a game's organiser to its players (README, Running a game)."""

    game = models.ForeignKey(Game, on_delete=models.CASCADE, related_name="announcements")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    text = models.TextField(max_length=GAME_ANNOUNCEMENT_MAX_LENGTH)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["game", "-created_at"], name="game_announcement_game_idx")]

    def __str__(self) -> str:
        return f"{self.game_id} @ {self.created_at:%Y-%m-%d %H:%M}"
