"""Request parsing and response shapes for the Alpaca-compatible trading API.

Input serializers validate query strings and JSON bodies (numbers or strings for quantities and
prices, ``True``/``False`` booleans). Output serializers declare each Alpaca shape field by field
so drf-spectacular can publish it, but build their dicts directly: the declared fields are the
schema, ``shape`` is the wire format, and a test holds the two to the same keys. Generic DRF
field-by-field serialisation of a 500-order list costs more than the query behind it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, cast

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from trading import calendar, margin, matching
from trading.api import times
from trading.errors import InvalidRequest
from trading.events import OrderState
from trading.models import (
    Account,
    Asset,
    CashEntry,
    Exchange,
    Game,
    GamePlayer,
    Order,
    OrderClass,
    OrderSide,
    OrderType,
    PositionIntent,
    TimeInForce,
    Watchlist,
)
from trading.selectors import (
    ACTIVITY_TYPES,
    ALPACA_ACTIVITY_TYPES,
    CASH_ACTIVITY_KINDS,
    FILL_ACTIVITY,
    ORDERS_LIMIT_MAX,
    TIMEFRAMES as PORTFOLIO_TIMEFRAMES,
    AccountSummary,
    Activity,
    OrderRow,
    PortfolioHistory,
    PositionValue,
)
from trading.units import (
    QTY_SCALE,
    UnitError,
    cents_to_str,
    dollars_to_cents,
    price_to_units,
    qty_to_str,
    qty_to_units,
    ratio_to_str,
    to_decimal,
    to_integer,
    units_to_str,
)

# --- Value formatting -------------------------------------------------------------------------


def rfc3339(moment: dt.datetime | None) -> str | None:
    """UTC with a 'Z', as Alpaca writes its timestamps."""
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def units_str(units: int) -> str:
    text = units_to_str(units)
    assert text is not None
    return text


# --- Input fields -----------------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.STR)
class QuantityField(serializers.Field):
    """A share quantity sent as a number or a string, up to 9 decimals ("0.5", 10, "10.0"), to
    integer quantity units (1/10^9 share)."""

    def to_internal_value(self, data: object) -> int:
        try:
            value = qty_to_units(data, field=self.field_name or "qty")
        except UnitError as error:
            raise serializers.ValidationError(str(error)) from None
        if abs(value) > 10**15 * QTY_SCALE:
            # Far past ORDER_MAX_QTY; refused here so no later arithmetic meets such a number.
            raise serializers.ValidationError("qty is too large")
        return value

    def to_representation(self, value: int) -> str | None:
        return qty_to_str(value)


@extend_schema_field(OpenApiTypes.STR)
class NotionalField(serializers.Field):
    """A dollar amount to trade, as a number or a string with at most 2 decimals, to cents."""

    def to_internal_value(self, data: object) -> int:
        try:
            value = dollars_to_cents(data, field=self.field_name or "notional")
        except UnitError as error:
            raise serializers.ValidationError(str(error)) from None
        if abs(value) > 10**15:
            raise serializers.ValidationError("notional is too large")
        return value

    def to_representation(self, value: int) -> str | None:
        return cents_to_str(value)


@extend_schema_field(OpenApiTypes.STR)
class PriceField(serializers.Field):
    """A dollar price as a number or a string, to integer 1/10,000 $ units."""

    def to_internal_value(self, data: object) -> int:
        try:
            value = price_to_units(data, field=self.field_name or "price")
        except UnitError as error:
            raise serializers.ValidationError(str(error)) from None
        if abs(value) > 10**15:
            raise serializers.ValidationError("price is too large")
        return value

    def to_representation(self, value: int) -> str | None:
        return units_to_str(value)


@extend_schema_field(OpenApiTypes.STR)
class PercentField(serializers.Field):
    """A percentage such as 1.5, to matching.PERCENT_SCALE units."""

    def to_internal_value(self, data: object) -> int:
        try:
            value = to_decimal(data, field=self.field_name or "percent") * matching.PERCENT_SCALE
        except UnitError as error:
            raise serializers.ValidationError(str(error)) from None
        if value != value.to_integral_value():
            raise serializers.ValidationError("has more than 4 decimal places")
        if abs(value) > 10**15:
            raise serializers.ValidationError("is too large")
        return int(value)

    def to_representation(self, value: int) -> str | None:
        return units_to_str(value)


class IntegerField(serializers.IntegerField):
    """DRF's integer field (limits and schema alike) reading ASCII digits only (trading/units.py)."""

    def to_internal_value(self, data: object) -> int:
        try:
            return to_integer(data, field=self.field_name or "value")
        except UnitError:
            self.fail("invalid")


class DecimalNumberField(serializers.DecimalField):
    """DRF's decimal field (digits, places and limits alike) reading ASCII digits only."""

    def to_internal_value(self, data: object) -> Decimal:
        try:
            value = to_decimal(data, field=self.field_name or "value")
        except UnitError:
            self.fail("invalid")
        return self.quantize(self.validate_precision(value))


@extend_schema_field(
    {
        "type": "string",
        "description": f"RFC 3339 time, or YYYY-MM-DD for that trading day; {times.RANGE_TEXT}.",
    }
)
class InstantField(serializers.Field):
    """An RFC 3339 time or a date (the start of that trading day) from a query string, in the
    range trading/api/times.py accepts. ``upper`` marks an upper bound (nanoseconds dropped
    rather than rounded up)."""

    def __init__(self, *, upper: bool = False, **kwargs: Any) -> None:
        self.upper = upper
        super().__init__(**kwargs)

    def to_internal_value(self, data: object) -> dt.datetime:
        if not isinstance(data, str):
            raise serializers.ValidationError("must be an RFC 3339 time or a date")
        name = self.field_name or "time"
        try:
            return times.parse_instant(data, name=name, date_as=calendar.day_start, upper=self.upper)
        except InvalidRequest as error:
            raise serializers.ValidationError(error.message.removeprefix(f"invalid {name}: ")) from None

    def to_representation(self, value: dt.datetime) -> str | None:
        return rfc3339(value)


@extend_schema_field({"type": "string", "format": "date", "description": f"YYYY-MM-DD, {times.RANGE_TEXT}."})
class DayField(serializers.Field):
    """A ``YYYY-MM-DD`` date from a query string, in the range trading/api/times.py accepts."""

    def to_internal_value(self, data: object) -> dt.date:
        if not isinstance(data, str):
            raise serializers.ValidationError("must be a date as YYYY-MM-DD")
        name = self.field_name or "date"
        try:
            return times.parse_day(data, name=name)
        except InvalidRequest as error:
            raise serializers.ValidationError(error.message.removeprefix(f"invalid {name}: ")) from None

    def to_representation(self, value: dt.date) -> str:
        return value.isoformat()


@extend_schema_field(OpenApiTypes.STR)
class CommaListField(serializers.Field):
    """``A,B,C`` from a query string (or a JSON list) as a list of non-empty strings."""

    def to_internal_value(self, data: object) -> list[str]:
        if isinstance(data, str):
            items = data.split(",")
        elif isinstance(data, list) and all(isinstance(item, str) for item in data):
            items = data
        else:
            raise serializers.ValidationError("must be a comma-separated list")
        return [item.strip() for item in items if item.strip()]

    def to_representation(self, value: list[str]) -> str:
        return ",".join(value)


# --- Requests ---------------------------------------------------------------------------------

ORDER_CLASSES = ("simple", "bracket", "oco", "oto")


class TakeProfitSerializer(serializers.Serializer[Any]):
    limit_price = PriceField()


class StopLossSerializer(serializers.Serializer[Any]):
    stop_price = PriceField()
    limit_price = PriceField(required=False, allow_null=True)


class OrderCreateSerializer(serializers.Serializer[Any]):
    symbol = serializers.CharField(max_length=16)
    qty = QuantityField(required=False, allow_null=True)
    notional = NotionalField(required=False, allow_null=True)
    side = serializers.ChoiceField(choices=OrderSide.choices)
    type = serializers.ChoiceField(choices=OrderType.choices)
    # opg and cls only with MARKET_HOURS=xnys: the service says why it refuses them otherwise.
    time_in_force = serializers.ChoiceField(choices=TimeInForce.values)
    limit_price = PriceField(required=False, allow_null=True)
    stop_price = PriceField(required=False, allow_null=True)
    trail_price = PriceField(required=False, allow_null=True)
    trail_percent = PercentField(required=False, allow_null=True)
    extended_hours = serializers.BooleanField(required=False, default=False)
    client_order_id = serializers.CharField(max_length=48, required=False, allow_null=True, allow_blank=True)
    order_class = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    take_profit = TakeProfitSerializer(required=False, allow_null=True)
    stop_loss = StopLossSerializer(required=False, allow_null=True)
    legs = serializers.JSONField(required=False, allow_null=True)
    position_intent = serializers.ChoiceField(
        choices=PositionIntent.choices, required=False, allow_null=True, allow_blank=True
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        order_class = (attrs.get("order_class") or "simple").lower()
        if order_class == "mleg" or attrs.get("legs"):
            raise serializers.ValidationError(
                "order_class mleg is for multi-leg options orders: the simulator trades no options"
            )
        if order_class not in ORDER_CLASSES:
            raise serializers.ValidationError(f"invalid order_class {order_class!r}")
        attrs["order_class"] = order_class
        if (attrs.get("qty") is None) == (attrs.get("notional") is None):
            raise serializers.ValidationError({"qty": "give either qty or notional"})
        return attrs


class OrderReplaceSerializer(serializers.Serializer[Any]):
    qty = QuantityField(required=False, allow_null=True)
    time_in_force = serializers.CharField(max_length=8, required=False, allow_null=True)
    limit_price = PriceField(required=False, allow_null=True)
    stop_price = PriceField(required=False, allow_null=True)
    # Price units for trail_price orders, percent units for trail_percent ones: both scale 10,000.
    trail = PriceField(required=False, allow_null=True)
    client_order_id = serializers.CharField(max_length=48, required=False, allow_null=True)


class OrdersQuerySerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=["open", "closed", "all"], default="open")
    limit = IntegerField(
        min_value=1,
        default=50,
        help_text=f"At most {ORDERS_LIMIT_MAX} orders are returned, whatever is asked.",
    )
    after = InstantField(required=False)
    until = InstantField(upper=True, required=False)
    direction = serializers.ChoiceField(choices=["asc", "desc"], default="desc")
    nested = serializers.BooleanField(required=False, default=False)
    side = serializers.ChoiceField(choices=OrderSide.choices, required=False)
    symbols = CommaListField(required=False)


class ClientOrderIdQuerySerializer(serializers.Serializer[Any]):
    client_order_id = serializers.CharField(max_length=48)


class CancelOrdersQuerySerializer(serializers.Serializer[Any]):
    cancel_orders = serializers.BooleanField(required=False, default=False)


class PositionCloseQuerySerializer(serializers.Serializer[Any]):
    qty = QuantityField(required=False)
    percentage = DecimalNumberField(max_digits=12, decimal_places=9, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "qty" in attrs and "percentage" in attrs:
            raise serializers.ValidationError("give qty or percentage, not both")
        return attrs


class AssetsQuerySerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=["active", "inactive"], required=False)
    asset_class = serializers.CharField(required=False)
    exchange = serializers.CharField(required=False)
    attributes = serializers.CharField(required=False)


class CalendarQuerySerializer(serializers.Serializer[Any]):
    start = DayField(required=False)
    end = DayField(required=False)


class PortfolioHistoryQuerySerializer(serializers.Serializer[Any]):
    period = serializers.RegexField(
        r"^([0-9]{1,4}[DWMA]|all)$",
        required=False,
        help_text="A number and a unit (D days, W weeks, M months, A years), at most 100 years, "
        "such as 1M; or all. Default 1M.",
    )
    timeframe = serializers.ChoiceField(
        choices=list(PORTFOLIO_TIMEFRAMES),
        required=False,
        help_text="Default: 1Min under 7 days, 15Min under 30 days, else 1D; intraday ones cover "
        "at most 30 days.",
    )
    date_start = DayField(required=False)
    date_end = DayField(required=False)
    start = InstantField(required=False)
    end = InstantField(upper=True, required=False)
    extended_hours = serializers.BooleanField(required=False, help_text="Accepted and ignored.")
    intraday_reporting = serializers.CharField(
        required=False, help_text="market_hours, extended_hours or continuous: accepted and ignored."
    )
    pnl_reset = serializers.CharField(required=False, help_text="per_day or no_reset: accepted and ignored.")
    cashflow_types = serializers.CharField(required=False, help_text="Accepted and ignored.")


class ActivitiesQuerySerializer(serializers.Serializer[Any]):
    activity_types = CommaListField(
        required=False,
        help_text=f"Comma-separated types among Alpaca's ({', '.join(ALPACA_ACTIVITY_TYPES)}); only "
        f"{', '.join(ACTIVITY_TYPES)} are ever recorded, so the others match nothing.",
    )
    category = serializers.ChoiceField(choices=["trade_activity", "non_trade_activity"], required=False)
    date = DayField(required=False)
    after = InstantField(required=False)
    until = InstantField(upper=True, required=False)
    direction = serializers.ChoiceField(choices=["asc", "desc"], default="desc")
    page_size = IntegerField(min_value=1, max_value=100, default=100)
    page_token = serializers.RegexField(
        r"^[0-9]{17}::[0-9a-fA-F-]{32,36}$",
        required=False,
        help_text="The id of the last activity of the previous page: the page starts after it.",
    )


class WatchlistCreateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=64)
    symbols = serializers.ListField(child=serializers.CharField(max_length=16), required=False, default=list)


class WatchlistUpdateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=64, required=False, allow_null=True)
    symbols = serializers.ListField(
        child=serializers.CharField(max_length=16), required=False, allow_null=True
    )


class WatchlistAddAssetSerializer(serializers.Serializer[Any]):
    symbol = serializers.CharField(max_length=16)


class WatchlistNameQuerySerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=64)


class AccountConfigurationUpdateSerializer(serializers.Serializer[Any]):
    """What a client may change; alpaca-py sends every field back, nulls included."""

    no_shorting = serializers.BooleanField(required=False, allow_null=True)
    suspend_trade = serializers.BooleanField(required=False, allow_null=True)
    trade_confirm_email = serializers.ChoiceField(choices=["all", "none"], required=False, allow_null=True)
    fractional_trading = serializers.BooleanField(required=False, allow_null=True)
    max_margin_multiplier = serializers.CharField(required=False, allow_null=True)
    # Accepted and ignored (no margin here); plain strings keep the schema to one enum per name.
    dtbp_check = serializers.CharField(required=False, allow_null=True, help_text="both, entry or exit")
    pdt_check = serializers.CharField(required=False, allow_null=True, help_text="both, entry or exit")
    ptp_no_exception_entry = serializers.BooleanField(required=False, allow_null=True)
    max_options_trading_level = IntegerField(required=False, allow_null=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        for name in ("dtbp_check", "pdt_check"):
            if attrs.get(name) not in (None, "both", "entry", "exit"):
                raise serializers.ValidationError({name: "must be both, entry or exit"})
        if attrs.get("fractional_trading") is False:
            raise serializers.ValidationError("fractional trading cannot be turned off here")
        multiplier = attrs.get("max_margin_multiplier")
        if multiplier is not None and multiplier.strip() not in ("1", "1.0"):
            raise serializers.ValidationError("margin is not supported: max_margin_multiplier must be 1")
        if attrs.get("max_options_trading_level"):
            raise serializers.ValidationError("options trading is not supported")
        return attrs


# --- Responses --------------------------------------------------------------------------------


class ShapeSerializer(serializers.Serializer[Any]):
    """Declared fields for the schema; ``shape`` builds the answer in one pass."""

    renamed: Mapping[str, str] = {}

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for python_name, wire_name in self.renamed.items():
            fields[wire_name] = fields.pop(python_name)
        return fields

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return self.shape(instance)

    @classmethod
    def shape(cls, instance: Any) -> dict[str, Any]:
        raise NotImplementedError


def _nullable_str(**kwargs: Any) -> serializers.CharField:
    return serializers.CharField(allow_null=True, **kwargs)


class AssetSerializer(ShapeSerializer):
    renamed = {"asset_class": "class"}

    id = serializers.UUIDField()
    asset_class = serializers.CharField(help_text="Sent as 'class'.")
    exchange = serializers.ChoiceField(choices=Exchange.choices)
    symbol = serializers.CharField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["active", "inactive"])
    tradable = serializers.BooleanField()
    marginable = serializers.BooleanField()
    maintenance_margin_requirement = serializers.IntegerField()
    margin_requirement_long = serializers.CharField()
    margin_requirement_short = serializers.CharField()
    shortable = serializers.BooleanField()
    easy_to_borrow = serializers.BooleanField()
    fractionable = serializers.BooleanField()
    attributes = serializers.ListField(child=serializers.CharField())

    @classmethod
    def shape(cls, asset: Asset) -> dict[str, Any]:
        return {
            "id": str(asset.id),
            "class": asset.asset_class,
            "exchange": asset.exchange,
            "symbol": asset.symbol,
            "name": asset.name,
            "status": "active" if asset.active else "inactive",
            "tradable": asset.active and asset.tradable and not asset.halted,
            "marginable": asset.marginable,
            # Longs are paid in full; shorts hold Reg T's 150 % and need 30 % (trading/margin.py).
            "maintenance_margin_requirement": margin.MAINTENANCE_MARGIN_PERCENT,
            "margin_requirement_long": "100",
            "margin_requirement_short": str(margin.INITIAL_MARGIN_PERCENT),
            "shortable": asset.shortable,
            "easy_to_borrow": asset.easy_to_borrow,
            "fractionable": True,
            "attributes": [],
        }


class OrderSerializer(ShapeSerializer):
    id = serializers.UUIDField()
    client_order_id = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    submitted_at = serializers.DateTimeField()
    filled_at = serializers.DateTimeField(allow_null=True)
    expired_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    canceled_at = serializers.DateTimeField(allow_null=True)
    failed_at = serializers.DateTimeField(allow_null=True)
    replaced_at = serializers.DateTimeField(allow_null=True)
    replaced_by = serializers.UUIDField(allow_null=True)
    replaces = serializers.UUIDField(allow_null=True)
    asset_id = serializers.UUIDField()
    symbol = serializers.CharField()
    asset_class = serializers.CharField()
    notional = _nullable_str(help_text="The dollar amount of a notional order, else null.")
    qty = _nullable_str(help_text="Null for a notional order, as on Alpaca.")
    filled_qty = serializers.CharField()
    filled_avg_price = _nullable_str()
    order_class = serializers.CharField()
    order_type = serializers.CharField()
    type = serializers.CharField()
    side = serializers.ChoiceField(choices=OrderSide.choices)
    position_intent = _nullable_str()
    time_in_force = serializers.CharField()
    limit_price = _nullable_str()
    stop_price = _nullable_str()
    status = serializers.CharField()
    extended_hours = serializers.BooleanField()
    legs = serializers.ListField(child=serializers.DictField(), allow_null=True)
    trail_percent = _nullable_str()
    trail_price = _nullable_str()
    hwm = _nullable_str()
    ratio_qty = _nullable_str()

    @classmethod
    def shape(
        cls,
        order: Order,
        state: OrderState | None = None,
        *,
        legs: bool = True,
        leg_states: Mapping[str, OrderState] | None = None,
    ) -> dict[str, Any]:
        """The order's REST shape; with ``state``, as it was at that event (trading/events.py),
        and its legs with theirs from ``leg_states``. Without ``legs``, an advanced order's legs
        are null, as in Alpaca's lists not nested."""
        if state is not None:
            return cls._shape(order, legs, leg_states, replaced_by=False) | {
                "status": state.status,
                "updated_at": rfc3339(state.updated_at),
                "filled_at": rfc3339(state.filled_at),
                "canceled_at": rfc3339(state.canceled_at),
                "expired_at": rfc3339(state.expired_at),
                "replaced_at": rfc3339(state.replaced_at),
                "replaced_by": state.replaced_by,
                "filled_qty": qty_to_str(state.filled_qty),
                "filled_avg_price": units_to_str(state.filled_avg_price_units),
                "hwm": units_to_str(state.high_water_mark_units),
                "stop_price": units_to_str(_stop_price(order, state.high_water_mark_units)),
            }
        return cls._shape(order, legs, leg_states, replaced_by=True)

    @classmethod
    def shape_row(cls, row: OrderRow) -> dict[str, Any]:
        """A list's order (legs null, not nested) from its plain row: the same answer as
        ``shape(order, legs=False)`` gives its model instance, by the same code (the row names
        its fields as the model does)."""
        return cls._shape(cast(Order, row), False, None, replaced_by=True)

    @classmethod
    def _shape(
        cls, order: Order, legs: bool, leg_states: Mapping[str, OrderState] | None, *, replaced_by: bool
    ) -> dict[str, Any]:
        # replaced_by is a reverse one-to-one; selectors join it, so this reads no more rows. A
        # state overlays its own (an order just placed has none), so then it is not read at all.
        replacement = getattr(order, "replaced_by", None) if replaced_by else None
        return {
            "id": str(order.id),
            "client_order_id": order.client_order_id,
            "created_at": rfc3339(order.created_at),
            "updated_at": rfc3339(order.updated_at),
            "submitted_at": rfc3339(order.submitted_at),
            "filled_at": rfc3339(order.filled_at),
            "expired_at": rfc3339(order.expired_at),
            "expires_at": rfc3339(order.expires_at),
            "canceled_at": rfc3339(order.canceled_at),
            "failed_at": rfc3339(order.failed_at),
            "replaced_at": rfc3339(order.replaced_at),
            "replaced_by": str(replacement.id) if replacement is not None else None,
            "replaces": str(order.replaces_id) if order.replaces_id else None,
            "asset_id": str(order.asset_id),
            "symbol": order.asset.symbol,
            "asset_class": order.asset.asset_class,
            "notional": cents_to_str(order.notional_cents),
            "qty": None if order.notional_cents is not None else qty_to_str(order.qty),
            "filled_qty": qty_to_str(order.filled_qty),
            "filled_avg_price": units_to_str(order.filled_avg_price_units),
            "order_class": order.order_class,
            "order_type": order.type,
            "type": order.type,
            "side": order.side,
            "position_intent": order.position_intent,
            "time_in_force": order.time_in_force,
            "limit_price": units_to_str(order.limit_price_units),
            "stop_price": units_to_str(_stop_price(order, order.high_water_mark_units)),
            "status": order.status,
            "extended_hours": order.extended_hours,
            "legs": _legs(order, leg_states or {}) if legs else None,
            "trail_percent": units_to_str(order.trail_percent_units),
            "trail_price": units_to_str(order.trail_price_units),
            "hwm": units_to_str(order.high_water_mark_units),
            "ratio_qty": None,
        }


def _legs(order: Order, states: Mapping[str, OrderState]) -> list[dict[str, Any]] | None:
    """An advanced order's legs in its shape, as Alpaca nests them; null for any other order
    and for a leg. Selectors attach them (``Order.leg_orders``) so a list reads them in one query."""
    if order.order_class == OrderClass.SIMPLE or order.parent_id is not None:
        return None
    legs = order.leg_orders
    if legs is None:
        legs = list(order.legs.select_related("asset", "replaced_by").order_by("submitted_at", "id"))
    return [OrderSerializer.shape(leg, states.get(str(leg.pk))) for leg in legs]


def _stop_price(order: Order, water_mark: int | None) -> int | None:
    """A trailing stop's stop price as it trails (from its water mark), as Alpaca shows it;
    any other order's own."""
    if order.type != OrderType.TRAILING_STOP or water_mark is None:
        return order.stop_price_units
    return matching.trailing_stop_price(
        side=order.side,
        trail_price=order.trail_price_units,
        trail_percent=order.trail_percent_units,
        water_mark=water_mark,
    )


class PositionSerializer(ShapeSerializer):
    asset_id = serializers.UUIDField()
    symbol = serializers.CharField()
    exchange = serializers.ChoiceField(choices=Exchange.choices)
    asset_class = serializers.CharField()
    asset_marginable = serializers.BooleanField()
    qty = serializers.CharField()
    qty_available = serializers.CharField()
    side = serializers.CharField(help_text="long or short")
    avg_entry_price = serializers.CharField()
    market_value = serializers.CharField()
    cost_basis = serializers.CharField()
    unrealized_pl = serializers.CharField()
    unrealized_plpc = serializers.CharField()
    unrealized_intraday_pl = serializers.CharField()
    unrealized_intraday_plpc = serializers.CharField()
    current_price = serializers.CharField()
    lastday_price = serializers.CharField()
    change_today = serializers.CharField()
    swap_rate = _nullable_str()
    avg_entry_swap_rate = _nullable_str()
    usd = serializers.DictField(allow_null=True)

    @classmethod
    def shape(cls, value: PositionValue) -> dict[str, Any]:
        asset = value.asset
        return {
            "asset_id": str(asset.id),
            "symbol": asset.symbol,
            "exchange": asset.exchange,
            "asset_class": asset.asset_class,
            "asset_marginable": asset.marginable,
            "qty": qty_to_str(value.qty),
            "qty_available": qty_to_str(value.qty_available),
            "side": value.side,
            "avg_entry_price": units_str(value.avg_entry_units),
            "market_value": units_str(value.market_value),
            "cost_basis": units_str(value.cost_basis),
            "unrealized_pl": units_str(value.unrealized_pl),
            "unrealized_plpc": ratio_to_str(*value.unrealized_plpc),
            "unrealized_intraday_pl": units_str(value.unrealized_intraday_pl),
            "unrealized_intraday_plpc": ratio_to_str(*value.unrealized_intraday_plpc),
            "current_price": units_str(value.current_price),
            "lastday_price": units_str(value.lastday_price),
            "change_today": ratio_to_str(*value.change_today),
            "swap_rate": None,
            "avg_entry_swap_rate": None,
            "usd": None,
        }


class AccountSerializer(ShapeSerializer):
    id = serializers.UUIDField()
    account_number = serializers.CharField()
    status = serializers.CharField()
    crypto_status = _nullable_str()
    options_approved_level = serializers.IntegerField()
    options_trading_level = serializers.IntegerField()
    currency = serializers.CharField()
    buying_power = serializers.CharField()
    regt_buying_power = serializers.CharField()
    daytrading_buying_power = serializers.CharField()
    effective_buying_power = serializers.CharField()
    non_marginable_buying_power = serializers.CharField()
    options_buying_power = serializers.CharField()
    bod_dtbp = serializers.CharField()
    cash = serializers.CharField()
    accrued_fees = serializers.CharField()
    pending_transfer_in = serializers.CharField()
    pending_transfer_out = serializers.CharField()
    portfolio_value = serializers.CharField()
    pattern_day_trader = serializers.BooleanField()
    trading_blocked = serializers.BooleanField()
    transfers_blocked = serializers.BooleanField()
    account_blocked = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    trade_suspended_by_user = serializers.BooleanField()
    multiplier = serializers.CharField()
    shorting_enabled = serializers.BooleanField()
    equity = serializers.CharField()
    last_equity = serializers.CharField()
    long_market_value = serializers.CharField()
    short_market_value = serializers.CharField()
    position_market_value = serializers.CharField()
    initial_margin = serializers.CharField()
    maintenance_margin = serializers.CharField()
    last_maintenance_margin = serializers.CharField()
    sma = serializers.CharField()
    daytrade_count = serializers.IntegerField()
    balance_asof = serializers.DateField()
    reserved_cash = serializers.CharField(
        help_text="Cash held back by open buy and short sell orders and by open shorts' initial margin (an addition)."
    )
    reset_at = serializers.DateTimeField(allow_null=True, help_text="Returns are measured from here.")

    @classmethod
    def shape(cls, summary: AccountSummary) -> dict[str, Any]:
        account: Account = summary.account
        # A game account may trade only while its game runs and its player is in it, and shorts
        # only if its game allows them (README, Running a game).
        player = _game_player_loaded(account)
        game_blocks = player is not None and (
            player.removed_at is not None or not player.game.is_open_at(summary.as_of)
        )
        shorting = account.shorting_enabled and (player is None or player.game.shorting_allowed)
        buying_power = cents_to_str(account.buying_power_cents)
        zero = "0.00"
        return {
            "id": str(account.id),
            "account_number": account.account_number,
            "status": "ACTIVE",
            "crypto_status": None,
            "options_approved_level": 0,
            "options_trading_level": 0,
            "currency": "USD",
            "buying_power": buying_power,
            "regt_buying_power": buying_power,
            "daytrading_buying_power": zero,
            "effective_buying_power": buying_power,
            "non_marginable_buying_power": buying_power,
            "options_buying_power": zero,
            "bod_dtbp": zero,
            "cash": cents_to_str(account.cash_cents),
            "accrued_fees": zero,
            "pending_transfer_in": zero,
            "pending_transfer_out": zero,
            "portfolio_value": units_str(summary.equity),
            "pattern_day_trader": False,
            "trading_blocked": account.trading_suspended or game_blocks,
            "transfers_blocked": False,
            "account_blocked": False,
            "created_at": rfc3339(account.created_at),
            "trade_suspended_by_user": account.trading_suspended,
            "multiplier": "1",
            "shorting_enabled": shorting,
            "equity": units_str(summary.equity),
            "last_equity": units_str(summary.last_equity),
            "long_market_value": units_str(summary.long_market_value),
            "short_market_value": units_str(summary.short_market_value),
            "position_market_value": units_str(summary.long_market_value - summary.short_market_value),
            "initial_margin": units_str(summary.initial_margin),
            "maintenance_margin": units_str(summary.maintenance_margin),
            "last_maintenance_margin": zero,
            "sma": zero,
            "daytrade_count": 0,
            "balance_asof": calendar.trading_day_of(summary.as_of).isoformat(),
            "reserved_cash": cents_to_str(account.reserved_cents),
            "reset_at": rfc3339(account.reset_at),
        }


def _game_player_loaded(account: Account) -> GamePlayer | None:
    """The account's game player when it was loaded with the account (the request's account and
    the dashboard's are, in the same query); None otherwise, so shaping never costs a query."""
    if not Account.game_player.is_cached(account):
        return None
    try:
        return account.game_player
    except GamePlayer.DoesNotExist:
        return None


class AccountConfigurationSerializer(ShapeSerializer):
    dtbp_check = serializers.CharField()
    fractional_trading = serializers.BooleanField()
    max_margin_multiplier = serializers.CharField()
    no_shorting = serializers.BooleanField()
    pdt_check = serializers.CharField()
    suspend_trade = serializers.BooleanField()
    trade_confirm_email = serializers.CharField()
    ptp_no_exception_entry = serializers.BooleanField()
    max_options_trading_level = serializers.IntegerField()

    @classmethod
    def shape(cls, account: Account, *, game: Game | None = None) -> dict[str, Any]:
        return {
            "dtbp_check": "entry",
            "fractional_trading": True,
            "max_margin_multiplier": "1",
            # A game's shorting rule is a ceiling the account's own setting only tightens.
            "no_shorting": not account.shorting_enabled or (game is not None and not game.shorting_allowed),
            "pdt_check": "entry",
            "suspend_trade": account.trading_suspended,
            "trade_confirm_email": account.trade_confirm_email,
            "ptp_no_exception_entry": False,
            "max_options_trading_level": 0,
        }


class ClockSerializer(ShapeSerializer):
    timestamp = serializers.DateTimeField()
    is_open = serializers.BooleanField()
    next_open = serializers.DateTimeField()
    next_close = serializers.DateTimeField()

    @classmethod
    def shape(cls, clock: calendar.Clock) -> dict[str, Any]:
        zone = calendar.trading_zone()
        # Alpaca writes clock times in New York time with their offset.
        return {
            "timestamp": clock.timestamp.astimezone(zone).isoformat(),
            "is_open": clock.is_open,
            "next_open": clock.next_open.astimezone(zone).isoformat(),
            "next_close": clock.next_close.astimezone(zone).isoformat(),
        }


class CalendarDaySerializer(ShapeSerializer):
    date = serializers.DateField()
    open = serializers.CharField(help_text="HH:MM, trading time zone")
    close = serializers.CharField(help_text="HH:MM, trading time zone")
    session_open = serializers.CharField(help_text="HHMM")
    session_close = serializers.CharField(help_text="HHMM")
    settlement_date = serializers.DateField()

    @classmethod
    def shape(cls, day: calendar.SessionDay) -> dict[str, Any]:
        return {
            "date": day.date.isoformat(),
            "open": f"{day.open:%H:%M}",
            "close": f"{day.close:%H:%M}",
            "session_open": f"{day.open:%H%M}",
            "session_close": f"{day.close:%H%M}",
            "settlement_date": day.date.isoformat(),
        }


class WatchlistSerializer(ShapeSerializer):
    id = serializers.UUIDField()
    account_id = serializers.UUIDField()
    name = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    assets = AssetSerializer(many=True)

    @classmethod
    def shape(cls, watchlist: Watchlist) -> dict[str, Any]:
        return {
            "id": str(watchlist.id),
            "account_id": str(watchlist.account_id),
            "name": watchlist.name,
            "created_at": rfc3339(watchlist.created_at),
            "updated_at": rfc3339(watchlist.updated_at),
            "assets": [AssetSerializer.shape(entry.asset) for entry in watchlist.entries.all()],
        }


class PortfolioHistorySerializer(ShapeSerializer):
    timestamp = serializers.ListField(child=serializers.IntegerField())
    equity = serializers.ListField(child=serializers.FloatField())
    profit_loss = serializers.ListField(child=serializers.FloatField())
    profit_loss_pct = serializers.ListField(child=serializers.FloatField(allow_null=True))
    base_value = serializers.FloatField()
    base_value_asof = serializers.DateField()
    timeframe = serializers.CharField()
    cashflow = serializers.DictField()

    @classmethod
    def shape(cls, history: PortfolioHistory) -> dict[str, Any]:
        return {
            "timestamp": history.timestamp,
            "equity": history.equity,
            "profit_loss": history.profit_loss,
            "profit_loss_pct": history.profit_loss_pct,
            "base_value": history.base_value,
            "base_value_asof": history.base_value_asof.isoformat(),
            "timeframe": history.timeframe,
            "cashflow": {},
        }


class TradeActivitySerializer(ShapeSerializer):
    id = serializers.CharField()
    account_id = serializers.UUIDField()
    activity_type = serializers.ChoiceField(choices=[FILL_ACTIVITY])
    transaction_time = serializers.DateTimeField()
    type = serializers.ChoiceField(choices=["fill", "partial_fill"])
    price = serializers.CharField()
    qty = serializers.CharField()
    side = serializers.ChoiceField(choices=OrderSide.choices)
    symbol = serializers.CharField()
    leaves_qty = serializers.CharField()
    order_id = serializers.UUIDField()
    cum_qty = serializers.CharField()
    order_status = serializers.CharField()

    @classmethod
    def shape(cls, activity: Activity) -> dict[str, Any]:
        fill = activity.fill
        assert fill is not None
        order = fill.order
        # As of this execution (trading.selectors annotates it): earlier executions of a
        # partially filled order are partial fills with what was left then.
        cum = getattr(fill, "cum_qty", None) or order.filled_qty
        leaves = order.qty - cum
        return {
            "id": activity.id,
            "account_id": str(fill.account_id),
            "activity_type": activity.activity_type,
            "transaction_time": rfc3339(fill.filled_at),
            "type": "fill" if leaves == 0 else "partial_fill",
            "price": units_str(fill.price_units),
            "qty": qty_to_str(fill.qty),
            "side": fill.side,
            "symbol": fill.asset.symbol,
            "leaves_qty": qty_to_str(leaves),
            "order_id": str(fill.order_id),
            "cum_qty": qty_to_str(cum),
            "order_status": order.status,
        }


class NonTradeActivitySerializer(ShapeSerializer):
    id = serializers.CharField()
    account_id = serializers.UUIDField()
    activity_type = serializers.ChoiceField(choices=list(CASH_ACTIVITY_KINDS))
    date = serializers.DateField()
    created_at = serializers.DateTimeField()
    net_amount = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    status = serializers.CharField()
    symbol = _nullable_str()
    qty = _nullable_str()
    price = _nullable_str()
    per_share_amount = _nullable_str()

    @classmethod
    def shape(cls, activity: Activity) -> dict[str, Any]:
        entry = activity.entry
        assert entry is not None
        fill = entry.fill if entry.kind == CashEntry.Kind.COMMISSION else None
        return {
            "id": activity.id,
            "account_id": str(entry.account_id),
            "activity_type": activity.activity_type,
            "date": calendar.trading_day_of(entry.created_at).isoformat(),
            "created_at": rfc3339(entry.created_at),
            "net_amount": cents_to_str(entry.amount_cents),
            "description": entry.memo,
            "status": "executed",
            "symbol": fill.asset.symbol if fill is not None else None,
            "qty": None,
            "price": None,
            "per_share_amount": None,
        }


def activity_shape(activity: Activity) -> dict[str, Any]:
    if activity.fill is not None:
        return TradeActivitySerializer.shape(activity)
    return NonTradeActivitySerializer.shape(activity)


class CancelOrderResultSerializer(ShapeSerializer):
    id = serializers.UUIDField()
    status = serializers.IntegerField()
    body = OrderSerializer()

    @classmethod
    def shape(cls, order: Order) -> dict[str, Any]:
        return {"id": str(order.id), "status": 200, "body": OrderSerializer.shape(order)}


class ErrorSerializer(serializers.Serializer[Any]):
    code = serializers.IntegerField(help_text="HTTP status * 100000 + 10000, e.g. 42210000")
    message = serializers.CharField()


class ClosePositionResultSerializer(serializers.Serializer[Any]):
    symbol = serializers.CharField()
    status = serializers.IntegerField()
    order_id = serializers.UUIDField(allow_null=True)
    body = serializers.DictField(help_text="The Order placed, or an error {code, message, symbol}.")


def close_position_result(
    symbol: str, *, order: Order | None, status: int, error: str = "", state: OrderState | None = None
) -> dict[str, Any]:
    if order is not None:
        return {
            "symbol": symbol,
            "status": status,
            "order_id": str(order.id),
            "body": OrderSerializer.shape(order, state),
        }
    body = {"code": status * 100000 + 10000, "message": error, "symbol": symbol}
    return {"symbol": symbol, "status": status, "order_id": None, "body": body}
