"""The operator's side of the trading core.

Money moves only through trading/services.py, so that the cash ledger always explains every
balance: balances are read-only here, and the actions (reset, grant cash, create or revoke keys,
cancel orders) call the services. Ledger entries, fills and ticks are history and cannot be
changed or deleted; orders and positions change only by trading.

The tick and minute-bar tables hold millions of rows, so their change lists never COUNT(*) the
table (an estimate from the catalogue instead, and a capped count when filtered), offer no
filters that would scan for distinct values, and search by exact symbol only.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from functools import cached_property
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import User
from django.core.paginator import Paginator
from django.db import connections, models
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern

from trading import selectors, services
from trading.errors import Forbidden, InvalidRequest, NotCancelable, NotFound
from trading.models import (
    OPEN_ORDER_STATUSES,
    Account,
    ApiKey,
    Asset,
    CashEntry,
    CommissionPlan,
    DailyBar,
    Fill,
    Game,
    GamePlayer,
    MinuteBar,
    Order,
    Position,
    StockPriceHistory,
    Watchlist,
    WatchlistEntry,
)
from trading.units import (
    CENTS_PER_DOLLAR,
    QTY_SCALE,
    UNITS_PER_CENT,
    cents_to_str,
    dollars_to_cents,
    qty_to_str,
    units_to_str,
)

admin.site.site_header = "Market simulator operations"
admin.site.site_title = "Market simulator ops"
admin.site.index_title = "Operations"

ACTION_TEMPLATE = "admin/trading/action_confirmation.html"
KEYS_CREATED_TEMPLATE = "admin/trading/account/api_keys_created.html"
SERVICE_ERRORS = (Forbidden, InvalidRequest, NotCancelable, NotFound)


# --- display helpers -----------------------------------------------------------------------------


def dollars(cents: int | None) -> str:
    """Cents as "$1,234.56" (negative: "-$1,234.56")."""
    if cents is None:
        return "-"
    text = f"${abs(Decimal(cents)) / CENTS_PER_DOLLAR:,.2f}"
    return f"-{text}" if cents < 0 else text


def shares(qty: int) -> str:
    """Quantity units as shares, up to 9 decimals."""
    return qty_to_str(qty) or "-"


def price(units: int | None) -> str:
    """Price units as "$187.25" (sub-cent digits kept, as Alpaca does)."""
    text = units_to_str(units)
    return "-" if text is None else f"${text}"


class EstimatedCountPaginator(Paginator):
    """A paginator that never counts a large table.

    Unfiltered: the planner's estimate (PostgreSQL ``reltuples``) or the primary-key span (an
    index lookup on any backend). Filtered: COUNT over at most ``cap`` + 1 rows, so a filter that
    matches millions costs as much as one that matches ``cap``; pages past the cap are not offered.
    """

    cap = 10_000

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if not isinstance(rows, QuerySet):
            return len(rows)
        if not rows.query.where:
            estimate = table_row_estimate(rows.model, rows.db)
            if estimate is not None and estimate > self.cap:
                return estimate
        return rows.order_by()[: self.cap + 1].count()


def table_row_estimate(model: type[models.Model], using: str) -> int | None:
    connection = connections[using]
    table = model._meta.db_table
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                [connection.ops.quote_name(table)],
            )
            row = cursor.fetchone()
        if row is not None and row[0] is not None and row[0] >= 0:  # -1: never analysed
            return int(row[0])
    if isinstance(model._meta.pk, models.AutoField | models.BigAutoField):
        # Two single-ended lookups: each is one step down the primary-key index.
        pks = model._default_manager.using(using).order_by().values_list("pk", flat=True)
        newest = pks.order_by("-pk").first()
        oldest = pks.order_by("pk").first()
        if newest is None or oldest is None:
            return 0
        return int(newest) - int(oldest) + 1
    key = model._meta.pk_fields
    if len(key) == 2 and key[0].name == "symbol" and isinstance(key[1], models.IntegerField):
        # Keyed by (symbol, counter), as ticks by (symbol, seq): each symbol's counter runs without
        # gaps from its oldest kept row to its newest (retention deletes the oldest), two seeks
        # per symbol down the key.
        counter = key[1].name
        rows = model._default_manager.using(using).filter(symbol=OuterRef("symbol")).order_by()
        newest_key = Subquery(rows.order_by(f"-{counter}").values(counter)[:1])
        oldest_key = Subquery(rows.order_by(counter).values(counter)[:1])
        spans = Asset.objects.using(using).order_by().annotate(span=newest_key - oldest_key + 1)
        return int(spans.aggregate(rows=Sum("span"))["rows"] or 0)
    return None


class LargeTableAdmin(admin.ModelAdmin):
    """Read-only change list for tables with millions of rows."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 100

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ExactSymbolSearch(admin.ModelAdmin):
    """Search by exact symbol: ``symbol = 'AAPL'`` uses the symbol indexes; the admin's default
    ``=symbol`` would compare ``UPPER(symbol)`` and scan the table."""

    search_fields = ["symbol__exact"]
    search_help_text = "Exact symbol, e.g. AAPL"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip().upper()
        return (queryset.filter(symbol=term) if term else queryset), False


class ImmutableAdmin(admin.ModelAdmin):
    """History rows: viewable, never added, changed or deleted by hand."""

    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _confirm(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    action: str,
    title: str,
    intro: str,
    button: str,
    form: forms.Form | None = None,
) -> TemplateResponse:
    """The intermediate page of a two-step action; it posts back with ``apply`` set."""
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "intro": intro,
        "button": button,
        "action": action,
        "form": form,
        "queryset": queryset,
        "opts": modeladmin.model._meta,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "select_across": request.POST.get("select_across", "0"),
    }
    return TemplateResponse(request, ACTION_TEMPLATE, context)


# --- assets --------------------------------------------------------------------------------------


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):
    list_display = ["symbol", "name", "sector", "exchange", "starting_price", "tradable", "halted", "active"]
    list_filter = ["halted", "tradable", "active", "exchange", "sector"]
    search_fields = ["symbol", "name"]
    ordering = ["symbol"]
    actions = ["halt_trading", "resume_trading"]
    readonly_fields = ["id", "asset_class"]

    @admin.display(description="Starting price", ordering="initial_price_units")
    def starting_price(self, obj: Asset) -> str:
        return price(obj.initial_price_units)

    @admin.action(description="Halt trading in selected assets")
    def halt_trading(self, request: HttpRequest, queryset: QuerySet[Asset]) -> None:
        """Stop new orders (services refuse halted assets with 403) and freeze the price.

        The market process freezes halted symbols: it produces no ticks for them while halted, so
        resting orders do not trigger either.
        """
        changed = queryset.filter(halted=False).update(halted=True)
        self.message_user(request, f"Halted {changed} asset(s).", messages.SUCCESS)

    @admin.action(description="Resume trading in selected assets")
    def resume_trading(self, request: HttpRequest, queryset: QuerySet[Asset]) -> None:
        """Lift a halt: orders are accepted again and the market process resumes ticking the symbol."""
        changed = queryset.filter(halted=True).update(halted=False)
        self.message_user(request, f"Resumed {changed} asset(s).", messages.SUCCESS)


# --- accounts and keys ---------------------------------------------------------------------------


class GrantCashForm(forms.Form):
    amount = forms.DecimalField(
        max_digits=14,
        decimal_places=2,
        help_text="Dollars to add to each selected account; negative withdraws (never below reserved cash).",
    )
    memo = forms.CharField(max_length=200, required=False)

    def clean_amount(self) -> Decimal:
        amount: Decimal = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("The amount must not be zero.")
        return amount


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    fields = ["key_id", "label", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["key_id", "label", "created_at", "last_used_at", "revoked_at"]
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = [
        "account_number",
        "user",
        "is_default",
        "cash",
        "reserved",
        "buying_power",
        "trading_suspended",
        "shorting_enabled",
        "created_at",
        "reset_at",
    ]
    list_filter = ["is_default", "trading_suspended", "shorting_enabled"]
    list_select_related = ["user"]
    search_fields = ["account_number", "user__username", "user__email"]
    raw_id_fields = ["user"]
    readonly_fields = [
        "id",
        "is_default",
        "account_number",
        "cash",
        "reserved",
        "buying_power",
        "created_at",
        "reset_at",
    ]
    fields = [
        "id",
        "user",
        "is_default",
        "account_number",
        "cash",
        "reserved",
        "buying_power",
        "shorting_enabled",
        "trading_suspended",
        "trade_confirm_email",
        "created_at",
        "reset_at",
    ]
    inlines = [ApiKeyInline]
    actions = ["reset_accounts", "grant_cash", "create_api_key"]
    ordering = ["-created_at"]

    def get_fields(self, request: HttpRequest, obj: Account | None = None) -> Any:
        # Adding: only the user; the account is opened by the service with its opening deposit,
        # as the user's default one if it has none yet, else as a further one.
        return ["user"] if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Account | None = None) -> list[str]:
        if obj is None:
            return []
        readonly = [*self.readonly_fields, "user"]
        # A game account's shorting follows its player's game rules (GamePlayer.no_shorting,
        # set at the join and by rule edits before the start): an edit here would disagree with them.
        if GamePlayer.objects.filter(account_id=obj.pk).exists():
            readonly.append("shorting_enabled")
        return readonly

    def get_inlines(
        self, request: HttpRequest, obj: Account | None
    ) -> list[type[admin.options.InlineModelAdmin]]:
        return [] if obj is None else list(self.inlines)

    def save_model(self, request: HttpRequest, obj: Account, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        has_default = Account.objects.filter(user=obj.user, is_default=True).exists()
        opened = (services.account_create if has_default else services.account_open)(user=obj.user)
        obj.pk = opened.pk
        obj.refresh_from_db()

    @admin.display(description="Cash", ordering="cash_cents")
    def cash(self, obj: Account) -> str:
        return dollars(obj.cash_cents)

    @admin.display(description="Reserved", ordering="reserved_cents")
    def reserved(self, obj: Account) -> str:
        return dollars(obj.reserved_cents)

    @admin.display(description="Buying power")
    def buying_power(self, obj: Account) -> str:
        return dollars(obj.buying_power_cents)

    @admin.action(description="Reset selected accounts")
    def reset_accounts(self, request: HttpRequest, queryset: QuerySet[Account]) -> HttpResponse | None:
        """Cancel open orders, clear positions and restore the starting cash (services.account_reset)."""
        if "apply" not in request.POST:
            return _confirm(
                self,
                request,
                queryset,
                action="reset_accounts",
                title="Reset accounts",
                intro=(
                    "Each selected account has its open orders canceled, its positions cleared and its cash "
                    f"set back to ${services.starting_cash_cents() / CENTS_PER_DOLLAR:,.2f}. "
                    "History stays; returns are measured from the reset."
                ),
                button="Reset these accounts",
            )
        done = 0
        for account in queryset:
            services.account_reset(account_id=account.pk)
            done += 1
        self.message_user(request, f"Reset {done} account(s).", messages.SUCCESS)
        return None

    @admin.action(description="Grant cash to selected accounts")
    def grant_cash(self, request: HttpRequest, queryset: QuerySet[Account]) -> HttpResponse | None:
        """Add (or withdraw) cash through the ledger (services.account_grant_cash)."""
        form = GrantCashForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return _confirm(
                self,
                request,
                queryset,
                action="grant_cash",
                title="Grant cash",
                intro="The amount is recorded in each account's cash ledger as a grant.",
                button="Grant",
                form=form,
            )
        amount_cents = dollars_to_cents(form.cleaned_data["amount"])
        memo = form.cleaned_data["memo"] or f"Granted by {request.user}"
        granted, failed = 0, []
        for account in queryset:
            try:
                services.account_grant_cash(account_id=account.pk, amount_cents=amount_cents, memo=memo)
                granted += 1
            except SERVICE_ERRORS as error:
                failed.append(f"{account.account_number}: {error}")
        if granted:
            self.message_user(
                request, f"Granted {dollars(amount_cents)} to {granted} account(s).", messages.SUCCESS
            )
        for failure in failed:
            self.message_user(request, f"Not granted to {failure}", messages.ERROR)
        return None

    @admin.action(description="Create an API key for selected accounts")
    def create_api_key(self, request: HttpRequest, queryset: QuerySet[Account]) -> HttpResponse:
        """Create keys and show their secrets on the answer page, once: only an HMAC is stored.

        The secrets go straight into this response, not into messages, which would keep them in a
        cookie or the session until displayed.
        """
        created = []
        for account in queryset.select_related("user"):
            try:
                key, secret = services.api_key_create(account_id=account.pk, label=f"admin:{request.user}")
            except Forbidden as refused:  # a player removed from the account's game
                self.message_user(request, f"No key for {account}: {refused.message}", messages.ERROR)
                continue
            created.append({"account": account, "key_id": key.key_id, "secret": secret})
        context = {
            **self.admin_site.each_context(request),
            "title": "API keys created",
            "opts": self.model._meta,
            "created": created,
        }
        response = TemplateResponse(request, KEYS_CREATED_TEMPLATE, context)
        response["Cache-Control"] = "no-store"
        return response


class RevokedFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["key_id", "account", "label", "active", "created_at", "last_used_at", "revoked_at"]
    list_filter = [RevokedFilter]
    list_select_related = ["account__user"]
    search_fields = ["=key_id", "label", "account__account_number", "account__user__username"]
    # The HMAC is useless to an operator; keys are made by the Account action, which shows the secret.
    fields = ["key_id", "account", "label", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["key_id", "account", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_keys"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(boolean=True, description="Active", ordering="revoked_at")
    def active(self, obj: ApiKey) -> bool:
        return obj.is_active

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        """Revoke at once: the service also evicts the key from the verified-key cache."""
        keys = list(queryset.filter(revoked_at__isnull=True).values_list("key_id", flat=True))
        for key_id in keys:
            services.api_key_revoke(key_id=key_id)
        self.message_user(request, f"Revoked {len(keys)} key(s).", messages.SUCCESS)


# --- orders, fills, positions, ledger -------------------------------------------------------------


@admin.register(Order)
class OrderAdmin(ImmutableAdmin):
    list_display = [
        "short_id",
        "account",
        "symbol",
        "side",
        "type",
        "quantity",
        "filled",
        "limit_price",
        "stop_price",
        "filled_avg_price",
        "status",
        "submitted_at",
    ]
    list_filter = ["status", "side", "position_intent", "type", "time_in_force"]
    list_select_related = ["account__user", "asset"]
    search_fields = ["client_order_id__exact", "account__account_number__exact", "asset__symbol__exact"]
    search_help_text = "Order id, client order id, account number or symbol (exact)"
    raw_id_fields = ["account", "asset", "replaces"]
    # Immutable by hand: orders change state only through the services' status-conditional updates.
    actions = ["cancel_orders"]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Order], search_term: str
    ) -> tuple[QuerySet[Order], bool]:
        # Exact matches only, each answered by an index (the admin's "=field" compares UPPER()).
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            pass
        matches = (
            Q(client_order_id=term) | Q(account__account_number=term.upper()) | Q(asset__symbol=term.upper())
        )
        return queryset.filter(matches), False

    @admin.display(description="Order", ordering="id")
    def short_id(self, obj: Order) -> str:
        return str(obj.pk)[:8]

    @admin.display(description="Symbol", ordering="asset__symbol")
    def symbol(self, obj: Order) -> str:
        return obj.asset.symbol

    @admin.display(description="Qty", ordering="qty")
    def quantity(self, obj: Order) -> str:
        if obj.notional_cents is not None:
            return f"${cents_to_str(obj.notional_cents)} ({shares(obj.qty)})"
        return shares(obj.qty)

    @admin.display(description="Filled", ordering="filled_qty")
    def filled(self, obj: Order) -> str:
        return shares(obj.filled_qty)

    @admin.display(description="Limit")
    def limit_price(self, obj: Order) -> str:
        return price(obj.limit_price_units)

    @admin.display(description="Stop")
    def stop_price(self, obj: Order) -> str:
        return price(obj.stop_price_units)

    @admin.display(description="Avg fill")
    def filled_avg_price(self, obj: Order) -> str:
        return price(obj.filled_avg_price_units)

    @admin.action(description="Cancel selected open orders")
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        canceled = 0
        for order in queryset.filter(status__in=OPEN_ORDER_STATUSES):
            try:
                services.order_cancel(account_id=order.account_id, order_id=order.pk)
                canceled += 1
            except SERVICE_ERRORS:
                pass  # filled or canceled meanwhile: the race has exactly one winner
        self.message_user(request, f"Canceled {canceled} order(s).", messages.SUCCESS)


@admin.register(Fill)
class FillAdmin(ImmutableAdmin):
    list_display = [
        "filled_at",
        "account",
        "symbol",
        "side",
        "quantity",
        "fill_price",
        "commission",
        "realized_pl",
    ]
    list_filter = ["side"]
    list_select_related = ["account__user", "asset"]
    search_fields = ["=account__account_number", "=asset__symbol"]
    raw_id_fields = ["order", "account", "asset"]

    @admin.display(description="Symbol", ordering="asset__symbol")
    def symbol(self, obj: Fill) -> str:
        return obj.asset.symbol

    @admin.display(description="Qty", ordering="qty")
    def quantity(self, obj: Fill) -> str:
        return shares(obj.qty)

    @admin.display(description="Price", ordering="price_units")
    def fill_price(self, obj: Fill) -> str:
        return price(obj.price_units)

    @admin.display(description="Commission", ordering="commission_cents")
    def commission(self, obj: Fill) -> str:
        return dollars(obj.commission_cents)

    @admin.display(description="Realized P&L", ordering="realized_pl_cents")
    def realized_pl(self, obj: Fill) -> str:
        return dollars(obj.realized_pl_cents)


@admin.register(Position)
class PositionAdmin(ImmutableAdmin):
    list_display = ["account", "symbol", "quantity", "held", "cost_basis", "avg_entry_price", "updated_at"]
    list_select_related = ["account__user", "asset"]
    search_fields = ["=account__account_number", "account__user__username", "=asset__symbol"]
    raw_id_fields = ["account", "asset"]

    @admin.display(description="Symbol", ordering="asset__symbol")
    def symbol(self, obj: Position) -> str:
        return obj.asset.symbol

    @admin.display(description="Qty", ordering="qty")
    def quantity(self, obj: Position) -> str:
        return shares(obj.qty)

    @admin.display(description="Held", ordering="qty_held")
    def held(self, obj: Position) -> str:
        return shares(obj.qty_held)

    @admin.display(description="Cost basis", ordering="cost_basis_cents")
    def cost_basis(self, obj: Position) -> str:
        return dollars(obj.cost_basis_cents)

    @admin.display(description="Avg entry")
    def avg_entry_price(self, obj: Position) -> str:
        if not obj.qty:
            return "-"
        return price(round(obj.cost_basis_cents * UNITS_PER_CENT * QTY_SCALE / obj.qty))


@admin.register(CashEntry)
class CashEntryAdmin(ImmutableAdmin):
    list_display = ["created_at", "account", "kind", "amount", "memo"]
    list_filter = ["kind"]
    list_select_related = ["account__user"]
    search_fields = ["=account__account_number", "account__user__username", "memo"]
    raw_id_fields = ["account", "fill"]

    @admin.display(description="Amount", ordering="amount_cents")
    def amount(self, obj: CashEntry) -> str:
        return dollars(obj.amount_cents)


@admin.register(CommissionPlan)
class CommissionPlanAdmin(admin.ModelAdmin):
    list_display = ["name", "per_order", "per_share", "minimum", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["name"]

    @admin.display(description="Per order", ordering="per_order_cents")
    def per_order(self, obj: CommissionPlan) -> str:
        return dollars(obj.per_order_cents)

    @admin.display(description="Per share", ordering="per_share_centi_cents")
    def per_share(self, obj: CommissionPlan) -> str:
        return f"${Decimal(obj.per_share_centi_cents) / 10_000:.4f}"

    @admin.display(description="Minimum", ordering="minimum_cents")
    def minimum(self, obj: CommissionPlan) -> str:
        return dollars(obj.minimum_cents)


# --- market data ---------------------------------------------------------------------------------


class StockPriceHistoryAdmin(ExactSymbolSearch, LargeTableAdmin):
    """Ticks are keyed by (symbol, seq) (docs/architecture.md, Storage), and Django's admin has no
    page for one row of a composite key: the change list is the whole admin, its rows link nowhere
    and no add, change, delete or history URL exists."""

    list_display_links = None
    actions = None
    # Down the primary key: one symbol's newest ticks first when searched, no sort of the table.
    ordering = ["-symbol", "-seq"]
    list_display = [
        "symbol",
        "seq",
        "trade_price",
        "size",
        "bid",
        "bid_size",
        "ask",
        "ask_size",
        "recorded",
    ]

    @admin.display(description="Recorded at", ordering="recorded_at")
    def recorded(self, obj: StockPriceHistory) -> dt.datetime:
        # Integer microseconds in the table (trading/fields.py): shown as the datetime it is.
        return obj.recorded_at

    @admin.display(description="Price")
    def trade_price(self, obj: StockPriceHistory) -> str:
        return price(obj.price_units)

    @admin.display(description="Bid")
    def bid(self, obj: StockPriceHistory) -> str:
        return price(obj.bid_units)

    @admin.display(description="Ask")
    def ask(self, obj: StockPriceHistory) -> str:
        return price(obj.ask_units)

    def get_urls(self) -> list[URLPattern]:
        return [url for url in super().get_urls() if url.name and url.name.endswith("_changelist")]


# AdminSite.register refuses a composite primary key outright (Django 5.2), for the pages of one
# row this admin does not have; the change list needs nothing from the key.
admin.site._registry[StockPriceHistory] = StockPriceHistoryAdmin(StockPriceHistory, admin.site)


class BarAdmin(ExactSymbolSearch, LargeTableAdmin):
    list_display = ["symbol", "started", "open", "high", "low", "close", "volume", "trade_count", "vwap"]

    @admin.display(description="Start", ordering="start")
    def started(self, obj: MinuteBar | DailyBar) -> dt.datetime:
        # Minute bars keep integer microseconds (trading/fields.py): shown as the datetime it is.
        return obj.start

    @admin.display(description="Open")
    def open(self, obj: MinuteBar | DailyBar) -> str:
        return price(obj.open_units)

    @admin.display(description="High")
    def high(self, obj: MinuteBar | DailyBar) -> str:
        return price(obj.high_units)

    @admin.display(description="Low")
    def low(self, obj: MinuteBar | DailyBar) -> str:
        return price(obj.low_units)

    @admin.display(description="Close")
    def close(self, obj: MinuteBar | DailyBar) -> str:
        return price(obj.close_units)

    @admin.display(description="VWAP")
    def vwap(self, obj: MinuteBar | DailyBar) -> str:
        return price(obj.vwap_units)


admin.site.register(MinuteBar, BarAdmin)
admin.site.register(DailyBar, BarAdmin)


# --- watchlists ----------------------------------------------------------------------------------


class WatchlistEntryInline(admin.TabularInline):
    model = WatchlistEntry
    extra = 0
    autocomplete_fields = ["asset"]


@admin.register(Watchlist)
class WatchlistAdmin(admin.ModelAdmin):
    list_display = ["name", "account", "symbols", "created_at", "updated_at"]
    list_select_related = ["account__user"]
    search_fields = ["name", "=account__account_number", "account__user__username"]
    autocomplete_fields = ["account"]
    inlines = [WatchlistEntryInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Watchlist]:
        return super().get_queryset(request).annotate(symbol_count=Count("entries"))

    @admin.display(description="Symbols", ordering="symbol_count")
    def symbols(self, obj: Watchlist) -> int:
        return int(getattr(obj, "symbol_count", 0))


@admin.register(WatchlistEntry)
class WatchlistEntryAdmin(admin.ModelAdmin):
    list_display = ["watchlist", "account", "asset", "position"]
    list_select_related = ["watchlist__account__user", "asset"]
    search_fields = ["watchlist__name", "=asset__symbol", "=watchlist__account__account_number"]
    autocomplete_fields = ["watchlist", "asset"]

    @admin.display(description="Account")
    def account(self, obj: WatchlistEntry) -> str:
        return str(obj.watchlist.account)


class GamePlayerInline(admin.TabularInline):
    model = GamePlayer
    extra = 0
    fields = readonly_fields = ("user", "account", "joined_at", "removed_at")
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Game)
class GameAdmin(admin.ModelAdmin):
    """Games are read here; they are made, changed and ended through /v2/games, whose services
    keep the players' accounts in step with the rules (README, Running a game)."""

    list_display = ["name", "organiser", "visibility", "starts_at", "ends_at", "ended_at", "player_count"]
    list_select_related = ["organiser"]
    list_filter = ["visibility"]
    search_fields = ["name", "organiser__username"]
    inlines = [GamePlayerInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Game]:
        return super().get_queryset(request).annotate(player_total=Count("players"))

    @admin.display(description="Players", ordering="player_total")
    def player_count(self, obj: Game) -> int:
        return int(getattr(obj, "player_total", 0))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Game | None = None) -> bool:
        return False


# --- Users: Django's admin, refusing names that look like another user's ----------------------------


def _refuse_lookalike(username: str, *, user_id: int | None) -> None:
    if selectors.username_lookalike_exists(username=username, exclude_user_id=user_id):
        raise forms.ValidationError(services.USERNAME_LOOKALIKE_MESSAGE, code="lookalike")


class UserAddForm(AdminUserCreationForm):
    def clean_username(self) -> str:
        username = super().clean_username()
        if username:
            _refuse_lookalike(username, user_id=None)
        return username


class UserEditForm(UserChangeForm):
    def clean_username(self) -> str:
        username = str(self.cleaned_data["username"])
        # An unchanged name is kept even if it collided before skeletons existed (migration 0002).
        if "username" in self.changed_data:
            _refuse_lookalike(username, user_id=self.instance.pk)
        return username


admin.site.unregister(User)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserEditForm
    add_form = UserAddForm
