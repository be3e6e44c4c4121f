"""Every write to the trading core. Keyword-only, typed, atomic, race-free on both databases.

Concurrency: money moves only through conditional UPDATEs (``... WHERE cash >= reserved + cost``)
and orders change state only through status-conditional UPDATEs, so two requests racing for the
same cash, shares or order have exactly one winner on PostgreSQL; on SQLite every transaction
takes the write lock at BEGIN (IMMEDIATE), which serialises them outright. Rows are touched in one
order (account, then position, then order) so PostgreSQL transactions cannot deadlock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.models import User
from django.contrib.sessions.backends.base import SessionBase
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import (
    BigIntegerField,
    Case,
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from config.cache import cache_manager
from trading import calendar, margin, matching, selectors
from trading.errors import Forbidden, InvalidRequest, NotCancelable, NotFound
from trading.events import (
    OrderEvent,
    OrderState,
    order_event_publish_on_commit,
    stream_credentials_revoke_on_commit,
    stream_key_credential,
    stream_session_account_credential,
)
from trading.models import (
    AUCTION_TIME_IN_FORCE,
    CLOSING_INTENTS,
    GAME_ANNOUNCEMENT_MAX_LENGTH,
    OPEN_ORDER_STATUSES,
    Account,
    ApiKey,
    Asset,
    CashEntry,
    CommissionPlan,
    Fill,
    Game,
    GameAnnouncement,
    GamePlayer,
    Order,
    OrderClass,
    OrderSide,
    OrderStatus,
    OrderType,
    Position,
    PositionIntent,
    TimeInForce,
    UsernameSkeleton,
    Watchlist,
    WatchlistEntry,
)
from trading.prepared import PreparedInsert, PreparedQuery, PreparedStatement
from trading.quotes import LatestQuote, latest_quotes
from trading.units import (
    QTY_SCALE,
    divide_half_even,
    dollars_to_cents,
    price_increment_valid,
    qty_for_value,
    qty_to_str,
    shares_to_units,
    trade_value_cents,
    units_to_str,
)
from trading.usernames import username_skeleton

logger = logging.getLogger(__name__)

# --- Accounts ---------------------------------------------------------------------------------


def starting_cash_cents() -> int:
    return dollars_to_cents(settings.ACCOUNT_STARTING_CASH, field="ACCOUNT_STARTING_CASH")


def account_open(*, user: User, cash_cents: int | None = None, now: dt.datetime | None = None) -> Account:
    """Give a user their default trading account with the opening deposit recorded in the ledger."""
    return _account_new(user=user, is_default=True, cash_cents=cash_cents, now=now)


def account_create(*, user: User, cash_cents: int | None = None, now: dt.datetime | None = None) -> Account:
    """Open a further, non-default account for a user who already has its default one: its own
    cash, orders, positions, keys and limits, next to the others (docs/architecture.md, Accounts)."""
    if not Account.objects.filter(user=user, is_default=True).exists():
        raise InvalidRequest("open the user's default account first")
    return _account_new(user=user, is_default=False, cash_cents=cash_cents, now=now)


def _account_new(*, user: User, is_default: bool, cash_cents: int | None, now: dt.datetime | None) -> Account:
    now = now or timezone.now()
    opening = starting_cash_cents() if cash_cents is None else cash_cents
    if opening < 0:
        raise InvalidRequest("opening cash cannot be negative")
    with transaction.atomic():
        # A second default account for the user is refused by the constraint (IntegrityError).
        account = Account.objects.create(
            user=user,
            is_default=is_default,
            account_number=_new_account_number(),
            cash_cents=opening,
            shorting_enabled=settings.SHORT_SELLING_DEFAULT,
            reset_at=now,
        )
        CashEntry.objects.create(
            account=account,
            kind=CashEntry.Kind.DEPOSIT,
            amount_cents=opening,
            memo="Opening deposit",
            created_at=now,
        )
    return account


def session_account_select(*, user_id: int, session: SessionBase, account_id: uuid.UUID | str) -> Account:
    """Make a browser session act on another of its user's accounts. The session's sockets that
    carry account data close, so the dashboard reconnects (and reloads) on the selected one."""
    account = Account.objects.filter(pk=_as_uuid(account_id, what="account"), user_id=user_id).first()
    if account is None:
        raise NotFound("account not found")
    session[selectors.SESSION_ACCOUNT_KEY] = str(account.pk)
    if session.session_key:
        stream_credentials_revoke_on_commit(stream_session_account_credential(session.session_key))
    return account


def _new_account_number() -> str:
    return "PA" + "".join(secrets.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(10))


def account_grant_cash(
    *, account_id: uuid.UUID | str, amount_cents: int, memo: str = "", now: dt.datetime | None = None
) -> CashEntry:
    """Add (or, with a negative amount, withdraw) cash; a withdrawal may not touch reserved cash."""
    now = now or timezone.now()
    account_id = _as_uuid(account_id, what="account")
    if amount_cents == 0:
        raise InvalidRequest("amount must not be zero")
    with transaction.atomic():
        changed = Account.objects.filter(
            pk=account_id, cash_cents__gte=F("reserved_cents") - amount_cents
        ).update(cash_cents=F("cash_cents") + amount_cents)
        if not changed:
            if not Account.objects.filter(pk=account_id).exists():
                raise NotFound("account not found")
            raise Forbidden("insufficient cash for this withdrawal")
        return CashEntry.objects.create(
            account_id=account_id,
            kind=CashEntry.Kind.GRANT,
            amount_cents=amount_cents,
            memo=memo or ("Cash grant" if amount_cents > 0 else "Cash withdrawal"),
            created_at=now,
        )


def account_reset(*, account_id: uuid.UUID | str, now: dt.datetime | None = None) -> Account:
    """Start over: open orders canceled, positions cleared, cash back to the starting amount.

    History (orders, fills, ledger) stays; returns are measured from ``reset_at``. The operator's
    reset (admin, a game's rule change before its start): no game rule is checked here;
    ``account_self_reset`` is the owner's.
    """
    now = now or timezone.now()
    with transaction.atomic():
        return _account_reset_locked(_account_with_game_locked(account_id), now=now)


def account_self_reset(*, account_id: uuid.UUID | str, now: dt.datetime | None = None) -> Account:
    """The owner's reset (POST /v2/account/reset): if the operator allows it, and for a game
    account only while its game runs, its player is in it and its rules allow resetting. The
    rules are read under the account's lock, so an end or a removal committed first is seen."""
    now = now or timezone.now()
    if not settings.ACCOUNT_SELF_RESET:
        raise Forbidden("account reset is disabled by the operator")
    with transaction.atomic():
        account = _account_with_game_locked(account_id)
        player = _game_player(account)
        if player is not None:
            _game_writes_refuse(player, now=now)
            if not player.game.self_reset_allowed:
                raise Forbidden("game rule: resetting is not allowed in this game")
        return _account_reset_locked(account, now=now)


def _account_reset_locked(account: Account, *, now: dt.datetime) -> Account:
    for order in Order.objects.filter(account=account, status__in=OPEN_ORDER_STATUSES).select_related(
        "asset"
    ):
        _order_close(order=order, status=OrderStatus.CANCELED, now=now)
    Position.objects.filter(account=account).delete()
    player = _game_player(account)
    account.refresh_from_db()
    # A game account starts over with the game's cash.
    opening = player.game.starting_cash_cents if player is not None else starting_cash_cents()
    CashEntry.objects.create(
        account=account,
        kind=CashEntry.Kind.RESET,
        amount_cents=opening - account.cash_cents,
        memo="Account reset",
        created_at=now,
    )
    Account.objects.filter(pk=account.pk).update(cash_cents=opening, reserved_cents=0, reset_at=now)
    account.refresh_from_db()
    return account


def account_configure(
    *,
    account_id: uuid.UUID | str,
    no_shorting: bool | None = None,
    suspend_trade: bool | None = None,
    trade_confirm_email: str | None = None,
    now: dt.datetime | None = None,
) -> Account:
    """PATCH /v2/account/configurations. A game account's shorting is a ceiling its game sets:
    asking for shorts where the game forbids them leaves them off (the answer says so); an ended
    game's accounts are read-only."""
    now = now or timezone.now()
    if trade_confirm_email is not None and trade_confirm_email not in ("all", "none"):
        raise InvalidRequest("trade_confirm_email must be 'all' or 'none'")
    with transaction.atomic():
        account = _account_with_game_locked(account_id)
        player = _game_player(account)
        if player is not None:
            _game_writes_refuse(player, now=now)
        if no_shorting is not None:
            if player is not None:
                # Kept whatever the game's rule, so a later rule edit neither loses a tightening
                # nor lifts the player past what they chose (game_update). The player's row is
                # written under the account's lock, as game_player_remove writes it (the game's
                # row, the account's, then the player's: docs/architecture.md, Games: locks).
                player.no_shorting = no_shorting
                player.save(update_fields=["no_shorting"])
            account.shorting_enabled = not no_shorting and (player is None or player.game.shorting_allowed)
        if suspend_trade is not None:
            account.trading_suspended = suspend_trade
        if trade_confirm_email is not None:
            account.trade_confirm_email = trade_confirm_email
        account.save(update_fields=["shorting_enabled", "trading_suspended", "trade_confirm_email"])
    return account


def _account_with_game_locked(account_id: uuid.UUID | str) -> Account:
    """The account with its game's rules, read after taking the account's row lock, so a game's
    end or a player's removal (which take that lock to cancel its orders) that committed before
    is seen, and one that commits after finds this transaction's orders to cancel.

    Two statements, not one locking read joined to the game: on PostgreSQL (read committed) a
    locking read that waited re-reads only the locked row, and would keep the game's row as it
    was before the wait."""
    try:
        _lock_account(account_id)
        return Account.objects.select_related("game_player__game").get(pk=account_id)
    except (Account.DoesNotExist, ValueError, TypeError, ValidationError):
        raise NotFound("account not found") from None


def _game_player(account: Account) -> GamePlayer | None:
    try:
        return account.game_player
    except GamePlayer.DoesNotExist:
        return None


def _as_uuid(value: uuid.UUID | str, *, what: str) -> uuid.UUID:
    """An id from a request; one that is not a UUID names nothing, so it is not found."""
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} not found") from None


def _lock_account(account_id: uuid.UUID | str) -> None:
    """Take the account's row lock first in every write that touches its money, orders or
    positions, so PostgreSQL transactions on one account queue instead of deadlocking.

    NO KEY UPDATE does not conflict with the key-share locks that inserting an order or a
    position (foreign keys to the account) takes. On SQLite it sends nothing: its IMMEDIATE
    transactions are serialised already, from BEGIN.
    """
    if not connection.features.has_select_for_update:
        return
    if connection.get_autocommit():  # as the ORM's locking read refuses, before compiling it
        raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
    _ACCOUNT_LOCK.run(account_id=account_id)


def _lock_game(game_id: uuid.UUID) -> None:
    """Take a game's row lock (NO KEY UPDATE: players' rows still insert beside it) before any
    account's, as ``game_end`` and ``game_player_remove`` do, in a write that decides on the
    game's end (``orders_expire``). Nothing on SQLite (``_lock_account``)."""
    if connection.features.has_select_for_update:
        list(Game.objects.select_for_update(no_key=True).filter(pk=game_id).values_list("pk", flat=True))


# Compiled once (trading/prepared.py): every write to an account's money takes it first.
_ACCOUNT_LOCK = PreparedStatement(
    lambda account_id: (
        Account.objects.select_for_update(no_key=True).filter(pk=account_id).values_list("pk", flat=True),
        None,
    ),
    account_id=Account._meta.get_field("id"),
)


# --- API keys ---------------------------------------------------------------------------------


def api_key_secret_hmac(secret: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), secret.encode(), hashlib.sha256).hexdigest()


API_KEY_REVOKED = "revoked"


def api_key_cache_key(key_id: str) -> str:
    return f"apikey:{key_id}"


def api_key_create(*, account_id: uuid.UUID | str, label: str = "") -> tuple[ApiKey, str]:
    """A new key id and secret; the secret is returned once and only its HMAC is stored.

    Not for the account of a player removed from its game: under the account's lock, so a removal
    (which revokes the account's keys under the same lock) either is seen here or revokes this
    key too. An ended game's accounts still get keys: they read, and cannot write."""
    key_id = "PK" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(18))
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        account = _account_with_game_locked(account_id)
        player = _game_player(account)
        if player is not None and player.removed_at is not None:
            raise Forbidden(GAME_PLAYER_REMOVED)
        key = ApiKey.objects.create(
            key_id=key_id, account=account, label=label, secret_hmac=api_key_secret_hmac(secret)
        )
    return key, secret


def api_key_revoke(
    *, key_id: str, account_id: uuid.UUID | str | None = None, now: dt.datetime | None = None
) -> ApiKey:
    keys = ApiKey.objects.filter(key_id=key_id)
    if account_id is not None:
        keys = keys.filter(account_id=account_id)
    key = keys.first()
    if key is None:
        raise NotFound("API key not found")
    if key.revoked_at is None:
        key.revoked_at = now or timezone.now()
        key.save(update_fields=["revoked_at"])
    # Verified keys are cached briefly; revocation must take effect at once. A marker, not a
    # delete: a request that read the key before this commit must not re-cache it as valid.
    transaction.on_commit(
        lambda: cache.set(api_key_cache_key(key_id), API_KEY_REVOKED, 2 * settings.API_KEY_CACHE_SECONDS)
    )
    # And every process drops its in-memory copy of the key's owner (trading.api.authentication).
    cache_manager().invalidate_on_commit(api_key_cache_key(key_id))
    # Open stream sockets authenticated with the key are closed, on every web process.
    stream_credentials_revoke_on_commit(stream_key_credential(key_id))
    return key


# --- Games ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GameRules:
    """What an organiser sets; ``game_create`` takes them whole, ``game_update`` replaces them."""

    name: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    starting_cash_cents: int
    description: str = ""
    commission_plan_id: int | None = None
    allowed_order_types: tuple[str, ...] = tuple(OrderType.values)
    allowed_order_classes: tuple[str, ...] = (OrderClass.SIMPLE,)
    shorting_allowed: bool = False
    max_position_share_bp: int | None = None
    late_joining_allowed: bool = True
    self_reset_allowed: bool = False
    visibility: str = Game.Visibility.PUBLIC
    player_cap: int | None = None

    @classmethod
    def of(cls, game: Game) -> GameRules:
        return cls(
            name=game.name,
            starts_at=game.starts_at,
            ends_at=game.ends_at,
            starting_cash_cents=game.starting_cash_cents,
            description=game.description,
            commission_plan_id=game.commission_plan_id,
            allowed_order_types=tuple(game.allowed_order_types),
            allowed_order_classes=tuple(game.allowed_order_classes),
            shorting_allowed=game.shorting_allowed,
            max_position_share_bp=game.max_position_share_bp,
            late_joining_allowed=game.late_joining_allowed,
            self_reset_allowed=game.self_reset_allowed,
            visibility=game.visibility,
            player_cap=game.player_cap,
        )


def _validate_game_rules(rules: GameRules) -> None:
    if not rules.name.strip():
        raise InvalidRequest("name must not be blank")
    if rules.ends_at <= rules.starts_at:
        raise InvalidRequest("ends_at must be after starts_at")
    if rules.starting_cash_cents < 0:
        raise InvalidRequest("starting_cash cannot be negative")
    unknown = set(rules.allowed_order_types) - set(OrderType.values)
    if unknown or not rules.allowed_order_types:
        raise InvalidRequest(f"allowed_order_types must be a non-empty list of {', '.join(OrderType.values)}")
    if OrderClass.SIMPLE not in rules.allowed_order_classes or set(rules.allowed_order_classes) - set(
        OrderClass.values
    ):
        raise InvalidRequest(
            f"allowed_order_classes must include simple and be among {', '.join(OrderClass.values)}"
        )
    if rules.max_position_share_bp is not None and not 0 < rules.max_position_share_bp <= 10_000:
        raise InvalidRequest("max_position_share must be above 0 and at most 100 %")
    if rules.visibility not in Game.Visibility.values:
        raise InvalidRequest("visibility must be public or invite_only")
    if rules.player_cap is not None and rules.player_cap < 1:
        raise InvalidRequest("player_cap must be at least 1")
    if (
        rules.commission_plan_id is not None
        and not CommissionPlan.objects.filter(pk=rules.commission_plan_id).exists()
    ):
        raise InvalidRequest("commission plan not found")


def _game_rule_fields(rules: GameRules) -> dict[str, object]:
    return {
        "name": rules.name.strip(),
        "description": rules.description,
        "starts_at": rules.starts_at,
        "ends_at": rules.ends_at,
        "starting_cash_cents": rules.starting_cash_cents,
        "commission_plan_id": rules.commission_plan_id,
        "allowed_order_types": sorted(set(rules.allowed_order_types)),
        "allowed_order_classes": sorted(set(rules.allowed_order_classes)),
        "shorting_allowed": rules.shorting_allowed,
        "max_position_share_bp": rules.max_position_share_bp,
        "late_joining_allowed": rules.late_joining_allowed,
        "self_reset_allowed": rules.self_reset_allowed,
        "visibility": rules.visibility,
        "player_cap": rules.player_cap,
    }


GAME_START_BACKDATE_MAX = dt.timedelta(days=1)


def game_create(*, organiser: User, rules: GameRules, now: dt.datetime | None = None) -> Game:
    """A new game, organised by any user (only staff with GAME_CREATE_STAFF_ONLY)."""
    now = now or timezone.now()
    if settings.GAME_CREATE_STAFF_ONLY and not organiser.is_staff:
        raise Forbidden("only staff may organise games")
    _validate_game_rules(rules)
    if rules.ends_at <= now:
        raise InvalidRequest("ends_at must be in the future")
    if rules.starts_at < now - GAME_START_BACKDATE_MAX:
        # A game may start "now" as a form fills in, not in a past its boards would have to price.
        raise InvalidRequest("starts_at cannot be more than a day in the past")
    return Game.objects.create(organiser=organiser, **_game_rule_fields(rules))


def _organised_game_locked(*, game_id: uuid.UUID | str, organiser_id: int) -> Game:
    game = Game.objects.select_for_update().filter(pk=_as_uuid(game_id, what="game")).first()
    if game is None:
        raise NotFound("game not found")
    if game.organiser_id != organiser_id:
        raise Forbidden("only the game's organiser may do this")
    return game


def game_update(
    *, game_id: uuid.UUID | str, organiser_id: int, rules: GameRules, now: dt.datetime | None = None
) -> Game:
    """Replace a game's rules; only before it starts, so no player trades under two sets."""
    now = now or timezone.now()
    _validate_game_rules(rules)
    with transaction.atomic():
        game = _organised_game_locked(game_id=game_id, organiser_id=organiser_id)
        if now >= game.starts_at:
            raise Forbidden("a game's rules cannot change once it has started")
        if rules.starts_at <= now:
            raise InvalidRequest("starts_at must be in the future")
        for field, value in _game_rule_fields(rules).items():
            setattr(game, field, value)
        game.save()
        # Players who joined already trade under the new rules: cash and shorting follow them.
        # Shorting is the new ceiling over each player's own no_shorting, read after
        # account_reset took the account's lock, so a tightening committed meanwhile
        # (account_configure writes it under that lock) is not overwritten.
        for player_id, account_id in GamePlayer.objects.filter(
            game=game, removed_at__isnull=True
        ).values_list("pk", "account_id"):
            account_reset(account_id=account_id, now=now)
            no_shorting = GamePlayer.objects.filter(pk=player_id).values_list("no_shorting", flat=True).get()
            Account.objects.filter(pk=account_id).update(
                shorting_enabled=game.shorting_allowed and not no_shorting
            )
    return game


def game_join(
    *, game_id: uuid.UUID | str, user: User, invite_code: str = "", now: dt.datetime | None = None
) -> GamePlayer:
    """Join a game: a further account of the user's, opened with the game's starting cash.

    A public game takes anyone; an invite-only one the holder of its code (compared in constant
    time). The player cap and late joining are checked under the game's row lock, so two users
    racing for the last place have one winner."""
    now = now or timezone.now()
    with transaction.atomic():
        game = Game.objects.select_for_update().filter(pk=_as_uuid(game_id, what="game")).first()
        if game is None:
            raise NotFound("game not found")
        if game.visibility == Game.Visibility.INVITE_ONLY and not hmac.compare_digest(
            invite_code.encode(), game.invite_code.encode()
        ):
            # Not 403: without the code, an invite-only game is not there to be found.
            raise NotFound("game not found")
        if now >= game.closes_at():
            raise Forbidden("the game is over")
        if game.organiser_id == user.pk:
            # The organiser reads every player's trades while the game runs (trades.csv).
            raise Forbidden("the organiser of a game cannot play in it")
        if now >= game.starts_at and not game.late_joining_allowed:
            raise Forbidden("the game has started and does not allow late joining")
        if GamePlayer.objects.filter(game=game, user=user).exists():
            raise Forbidden("already joined this game")
        if game.player_cap is not None and GamePlayer.objects.filter(game=game).count() >= game.player_cap:
            raise Forbidden("the game is full")
        account = account_create(user=user, cash_cents=game.starting_cash_cents, now=now)
        Account.objects.filter(pk=account.pk).update(shorting_enabled=game.shorting_allowed)
        return GamePlayer.objects.create(game=game, account=account, user=user, joined_at=now)


def game_player_remove(
    *, game_id: uuid.UUID | str, organiser_id: int, username: str, now: dt.datetime | None = None
) -> GamePlayer:
    """Take a player out of a game: its open orders canceled, its account's keys revoked (their
    sockets close on every process); its history stays."""
    now = now or timezone.now()
    with transaction.atomic():
        game = _organised_game_locked(game_id=game_id, organiser_id=organiser_id)
        player = GamePlayer.objects.filter(game=game, user__username=username).first()
        if player is None:
            raise NotFound("player not found")
        if now >= game.closes_at():
            # The final standings are the players of the game as it ended.
            raise Forbidden("the game is over: its players stay in the final standings")
        # The account's lock before the player's row: the order is the game's row, the account's,
        # then the player's, everywhere (docs/architecture.md, Games: locks). account_configure
        # writes the same row under the account's lock; written first here, the two deadlocked.
        _lock_account(player.account_id)
        if player.removed_at is None:
            player.removed_at = now
            player.save(update_fields=["removed_at"])
        _game_accounts_cancel_orders([player.account_id], now=now)
        for key_id in ApiKey.objects.filter(
            account_id=player.account_id, revoked_at__isnull=True
        ).values_list("key_id", flat=True):
            api_key_revoke(key_id=key_id, now=now)
    return player


def game_end(*, game_id: uuid.UUID | str, organiser_id: int, now: dt.datetime | None = None) -> Game:
    """End a game early: no more trading, and every open order of its accounts canceled."""
    now = now or timezone.now()
    with transaction.atomic():
        game = _organised_game_locked(game_id=game_id, organiser_id=organiser_id)
        if now >= game.closes_at():
            raise Forbidden("the game is over already")
        game.ended_at = now
        game.save(update_fields=["ended_at"])
        # The accounts' locks after the game's (as ``orders_expire`` takes them), in one order,
        # as ``games_close_due``'s: two writers that lock several never wait on each other in a ring.
        _game_accounts_cancel_orders(
            sorted(GamePlayer.objects.filter(game=game).values_list("account_id", flat=True)), now=now
        )
    return game


def game_announcement_post(
    *, game_id: uuid.UUID | str, author_id: int, text: str, now: dt.datetime | None = None
) -> GameAnnouncement:
    """An announcement from the game's organiser to its players (1 to
    GAME_ANNOUNCEMENT_MAX_LENGTH characters once trimmed); anyone else is refused."""
    text = text.strip()
    if not text:
        raise InvalidRequest("text must not be empty")
    if len(text) > GAME_ANNOUNCEMENT_MAX_LENGTH:
        raise InvalidRequest(f"text must be at most {GAME_ANNOUNCEMENT_MAX_LENGTH} characters")
    # Found as the game's page finds it: an invite-only game is not there for outsiders.
    game = selectors.game_get(game_id=game_id, user_id=author_id)
    if game.organiser_id != author_id:
        raise Forbidden("only the game's organiser may post announcements")
    return GameAnnouncement.objects.create(
        game=game, author_id=author_id, text=text, created_at=now or timezone.now()
    )


def _game_accounts_cancel_orders(
    account_ids: list[uuid.UUID], *, now: dt.datetime, ended_at: dt.datetime | None = None
) -> int:
    """Cancel the accounts' open orders at ``now`` (``canceled_at`` ``ended_at`` when given: see
    ``_order_close``), each under its account's lock (an order closed meanwhile is passed over).

    A day order whose day ended strictly before the account stopped (``ended_at``, else ``now``)
    and which the periodic expiry has not reached yet is expired instead, as ``orders_expire``
    would have: it was no longer open when the account stopped. One whose day ends at that very
    instant (a game ending at 16:00 New York time) is canceled: the game's end wins the tie, as in
    ``orders_expire`` (README, Running a game). Returns how many were open, legs an entry's
    cancel closes included."""
    stopped = ended_at or now
    canceled = 0
    for account_id in account_ids:
        _lock_account(account_id)
        orders = list(
            Order.objects.filter(account_id=account_id, status__in=OPEN_ORDER_STATUSES).select_related(
                "asset"
            )
        )
        for order in orders:
            if order.expires_at is not None and order.expires_at < stopped:
                _order_close(order=order, status=OrderStatus.EXPIRED, now=now)
            else:
                _order_close(order=order, status=OrderStatus.CANCELED, now=now, ended_at=ended_at)
        canceled += len(orders)
    return canceled


# Refusals that name the rule (Alpaca's shape: 403, code 40310000).
GAME_OVER = "game rule: the game is over; its accounts are read-only"
GAME_PLAYER_REMOVED = "game rule: this player was removed from the game"
GAME_NO_SHORTING = "game rule: short selling is not allowed in this game"


def games_close_due(*, now: dt.datetime | None = None) -> int:
    """Cancel every open order of the accounts of games that are over (by ``ends_at``, or
    ``ended_at`` when ended early) and of removed players, each with its ``canceled`` event,
    as of the instant the account stopped trading (``game_account_orders_close``).

    The periodic job (jobs/schedule.py) runs this for the accounts nobody reads: a read of such
    an account closes its orders first (``game_account_orders_close_on_read``), and until either
    runs the market refuses to fill them (``order_fill``) and placement refuses new ones, so
    nothing trades after the end. Idempotent: a run finds only orders still open. Returns how
    many orders it canceled.
    """
    now = now or timezone.now()
    player = "account__game_player__"
    due = (
        Order.objects.filter(status__in=OPEN_ORDER_STATUSES, **{f"{player}isnull": False})
        .filter(
            Q(**{f"{player}game__ends_at__lte": now})
            | Q(**{f"{player}game__ended_at__lte": now})
            | Q(**{f"{player}removed_at__lte": now})
        )
        .values_list("account_id", flat=True)
        .distinct()
    )
    # One transaction per account, so one busy account does not hold the others' locks.
    return sum(game_account_orders_close(account_id=account_id, now=now) for account_id in sorted(set(due)))


def _game_closed_at(player: GamePlayer) -> dt.datetime:
    """The instant a game account stopped trading: its game's end, or its player's removal."""
    ends = player.game.closes_at()
    return ends if player.removed_at is None else min(ends, player.removed_at)


def game_account_orders_close(*, account_id: uuid.UUID | str, now: dt.datetime | None = None) -> int:
    """Cancel the open orders of a game account that may no longer trade (its game over, or its
    player removed), their ``canceled_at`` the instant it stopped (``_game_closed_at``): they could
    not fill after it, so that is when they ended, whoever closes them and however late. Their
    ``updated_at`` and ``canceled`` events carry ``now``, the close's own time, so a client that
    keeps the latest state of an order never takes an earlier-stamped cancel for an old one.

    Under the account's lock, re-reading the game: the job and a read racing for the same orders
    cancel each once, with one ``canceled`` event. Returns how many it canceled."""
    now = now or timezone.now()
    with transaction.atomic():
        player = _game_player(_account_with_game_locked(account_id))
        if player is None or not _game_over_for(player, now):
            return 0
        return _game_accounts_cancel_orders(
            [player.account_id], now=now, ended_at=min(now, _game_closed_at(player))
        )


def game_account_orders_close_on_read(*, account: Account, now: dt.datetime | None = None) -> bool:
    """Before a read of ``account`` (loaded with its game player and game): if its game is over
    and it still has open orders, cancel them (``game_account_orders_close``), so the read shows
    them canceled at the end instead of open until the periodic job. The stored status stays the
    one truth and the events go out once. No query unless the game is over; then one, and the
    close only if an order is open. Returns whether the account was seen with open orders after
    its game's end: the caller reloads it then, whether this call canceled them or a close racing
    it did (its reserved cash and buying power changed since it was loaded either way)."""
    now = now or timezone.now()
    if not _game_over_for(_game_player(account), now):
        return False
    if not Order.objects.filter(account_id=account.pk, status__in=OPEN_ORDER_STATUSES).exists():
        return False
    game_account_orders_close(account_id=account.pk, now=now)
    return True


def _game_over_for(player: GamePlayer | None, now: dt.datetime) -> bool:
    """Whether an account may no longer trade at all: its game is over or its player removed."""
    return player is not None and (player.removed_at is not None or now >= player.game.closes_at())


def _game_writes_refuse(player: GamePlayer, *, now: dt.datetime) -> None:
    """An ended game's accounts, and a removed player's, only read (README, Running a game)."""
    if player.removed_at is not None:
        raise Forbidden(GAME_PLAYER_REMOVED)
    if now >= player.game.closes_at():
        raise Forbidden(GAME_OVER)


def account_writes_refuse(*, account_id: uuid.UUID | str, now: dt.datetime | None = None) -> None:
    """Raise Forbidden if the account is a game account that may no longer write (its game over,
    or its player removed); for a caller that must refuse before it writes anything (closing
    every position answers 403 whole, not one 403 per position). One query."""
    player = GamePlayer.objects.filter(account_id=account_id).select_related("game").first()
    if player is not None:
        _game_writes_refuse(player, now=now or timezone.now())


def _game_refuse(*, player: GamePlayer | None, request: OrderRequest, now: dt.datetime) -> None:
    """The rules a game account's order must meet, checked under the account's lock (the game
    came with the account's locked row, one query): no rule costs a query of its own, and an end
    or a removal committed before the lock is seen."""
    if player is None:
        return
    game = player.game
    _game_writes_refuse(player, now=now)
    if now < game.starts_at:
        raise Forbidden("game rule: the game has not started yet")
    if request.type not in game.allowed_order_types:
        raise Forbidden(f"game rule: {request.type} orders are not allowed in this game")
    if request.order_class not in game.allowed_order_classes:
        raise Forbidden(f"game rule: {request.order_class} orders are not allowed in this game")


def _fill_price_bound_units(
    *,
    side: str,
    type: str,
    limit: int | None,
    stop: int | None,
    trail_price: int | None,
    trail_percent: int | None,
    quote: LatestQuote,
) -> int:
    """A per-share price an order of the position-size rule is valued at: for a buy, the most it
    can fill at (its limit; a stop's stop, or the ask if the stop is below it; a trailing stop's
    level from the price now), the bound its reservation uses; for a sell, its limit or the bid,
    whichever is higher (a short's value grows with the price it is sold at)."""
    if side == OrderSide.BUY:
        if type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            assert limit is not None
            return limit
        if type == OrderType.STOP:
            assert stop is not None
            return max(stop, quote.ask)
        if type == OrderType.TRAILING_STOP:
            resting = matching.RestingOrder(
                id="", symbol="", side="buy", type=type, trail_price=trail_price, trail_percent=trail_percent
            )
            return max(quote.ask, matching.trailing_stop_level(resting, quote.price))
        return quote.ask
    if limit is not None:
        return max(limit, quote.bid)
    return quote.bid


def _game_refuse_position(
    *,
    player: GamePlayer | None,
    account: Account,
    asset: Asset,
    position_qty: int,
    intent: str,
    qty: int,
    quote: LatestQuote,
    request: OrderRequest,
) -> None:
    """Shorting and position size, under the account's lock. A closing order only shrinks the
    position, so only opening orders are checked. The size is a conservative bound: the position
    after this order and every open order opening the same side of the symbol fill (their
    unfilled qty), all of it valued at the highest price any of them can fill at
    (``_fill_price_bound_units``), against the equity now. So a stop above the market, or
    several orders each under the limit, cannot carry a position past it."""
    if player is None or intent in CLOSING_INTENTS:
        return
    game = player.game
    if intent == PositionIntent.SELL_TO_OPEN and not game.shorting_allowed:
        raise Forbidden(GAME_NO_SHORTING)
    if game.max_position_share_bp is None:
        return
    price = _fill_price_bound_units(
        side=request.side,
        type=request.type,
        limit=request.limit_price_units,
        stop=request.stop_price_units,
        trail_price=request.trail_price_units,
        trail_percent=request.trail_percent_units,
        quote=quote,
    )
    after = abs(position_qty) + qty
    # Opening orders of the other side cannot be open at once (_position_intent refuses that).
    for order in Order.objects.filter(
        account_id=account.pk, asset=asset, status__in=OPEN_ORDER_STATUSES, position_intent=intent
    ).values(
        "type",
        "qty",
        "filled_qty",
        "limit_price_units",
        "stop_price_units",
        "trail_price_units",
        "trail_percent_units",
    ):
        after += order["qty"] - order["filled_qty"]
        price = max(
            price,
            _fill_price_bound_units(
                side=request.side,
                type=order["type"],
                limit=order["limit_price_units"],
                stop=order["stop_price_units"],
                trail_price=order["trail_price_units"],
                trail_percent=order["trail_percent_units"],
                quote=quote,
            ),
        )
    value = after * price  # price units times quantity units
    equity = selectors.account_summary(account=account).equity  # price units
    if value * 10_000 > equity * QTY_SCALE * game.max_position_share_bp:
        raise Forbidden(
            f"game rule: a position may be at most {Decimal(game.max_position_share_bp) / 100:.2f} % of equity"
            " (max_position_share: the position after this order and the symbol's open orders on"
            " its side fill)"
        )


# --- Orders -----------------------------------------------------------------------------------


# Alpaca's smallest notional order (docs/architecture.md, Fractional and notional orders).
NOTIONAL_MIN_CENTS = 100
# What fractional and notional orders may be, as on Alpaca.
FRACTIONAL_ORDER_TYPES = (OrderType.MARKET, OrderType.LIMIT)
FRACTIONAL_TIME_IN_FORCE = (TimeInForce.DAY,)


@dataclass(frozen=True)
class OrderRequest:
    """An order as the service takes it: ``qty`` in quantity units (1/10^9 share), or a
    ``notional`` in cents to be sized at the price it would fill at."""

    symbol: str
    qty: int | None
    side: str
    type: str
    time_in_force: str
    limit_price_units: int | None = None
    stop_price_units: int | None = None
    trail_price_units: int | None = None
    trail_percent_units: int | None = None
    client_order_id: str | None = None
    extended_hours: bool = False
    notional_cents: int | None = None
    # Alpaca's position_intent, when the client sends one: checked against the inferred one.
    position_intent: str | None = None
    # Advanced orders (README, Advanced orders): the class and its legs' prices.
    order_class: str = OrderClass.SIMPLE
    take_profit_limit_units: int | None = None
    stop_loss_stop_units: int | None = None
    stop_loss_limit_units: int | None = None

    @property
    def fractional(self) -> bool:
        return self.notional_cents is not None or (self.qty is not None and self.qty % QTY_SCALE != 0)


@dataclass(frozen=True)
class CommissionRates:
    """A commission plan's figures (or settings' when no plan applies)."""

    per_order_cents: int
    per_share_centi_cents: int
    minimum_cents: int

    @classmethod
    def of(cls, plan: CommissionPlan | None) -> CommissionRates:
        if plan is None:
            return cls(
                per_order_cents=settings.COMMISSION_PER_ORDER_CENTS,
                per_share_centi_cents=settings.COMMISSION_PER_SHARE_CENTI_CENTS,
                minimum_cents=settings.COMMISSION_MINIMUM_CENTS,
            )
        return cls(
            per_order_cents=plan.per_order_cents,
            per_share_centi_cents=plan.per_share_centi_cents,
            minimum_cents=plan.minimum_cents,
        )

    def cents(self, qty: int) -> int:
        """The commission of a fill of ``qty`` quantity units: the per-share part pro rata, so
        half a share pays half the per-share rate (rounded half-even to the cent)."""
        if not (self.per_order_cents or self.per_share_centi_cents or self.minimum_cents):
            return 0
        per_share = divide_half_even(self.per_share_centi_cents * qty, 100 * QTY_SCALE)
        return max(self.minimum_cents, self.per_order_cents + per_share)


def commission_rates(*, account_id: uuid.UUID | None = None) -> CommissionRates:
    """The rates an account pays: its game's plan, if the game names one; anything else the
    newest active plan (one query). Order placement reads the same with the account's locked
    row instead (``_placement_read``), so no plan costs a query of its own there."""
    plans = CommissionPlan.objects.filter(active=True).order_by("-created_at", "-pk")
    if account_id is not None:
        in_game = Q(games__players__account_id=account_id)
        plans = (
            CommissionPlan.objects.filter(Q(active=True) | in_game)
            .annotate(for_account=Count("games__players", filter=in_game))
            .order_by("-for_account", "-created_at", "-pk")
        )
    return CommissionRates.of(plans.first())


def commission_cents(*, qty: int, account_id: uuid.UUID | None = None) -> int:
    """The commission of a fill of ``qty`` quantity units (``CommissionRates.cents``) at the
    rates the account pays (one query)."""
    return commission_rates(account_id=account_id).cents(qty)


def _validate(request: OrderRequest) -> None:
    if request.side not in OrderSide.values:
        raise InvalidRequest(f"invalid side {request.side!r}: must be buy or sell")
    if request.position_intent is not None:
        if request.position_intent not in PositionIntent.values:
            raise InvalidRequest(f"invalid position_intent {request.position_intent!r}")
        if not request.position_intent.startswith(f"{request.side}_"):
            raise InvalidRequest(
                f"position_intent {request.position_intent} does not match side {request.side}"
            )
    if request.type not in OrderType.values:
        raise InvalidRequest(f"invalid order type {request.type!r}")
    if request.time_in_force in AUCTION_TIME_IN_FORCE:
        if calendar.always_open():
            raise InvalidRequest(
                f"time_in_force {request.time_in_force} is not supported: the market never closes"
            )
        if request.type not in (OrderType.MARKET, OrderType.LIMIT):
            raise InvalidRequest(f"time_in_force {request.time_in_force} is only for market and limit orders")
    if request.time_in_force not in TimeInForce.values:
        raise InvalidRequest(f"invalid time_in_force {request.time_in_force!r}")
    _validate_size(request)
    needs_limit = request.type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
    needs_stop = request.type in (OrderType.STOP, OrderType.STOP_LIMIT)
    if needs_limit != (request.limit_price_units is not None):
        raise InvalidRequest("limit_price is required for limit and stop_limit orders and only for them")
    if needs_stop != (request.stop_price_units is not None):
        raise InvalidRequest("stop_price is required for stop and stop_limit orders and only for them")
    trails = (request.trail_price_units is not None) + (request.trail_percent_units is not None)
    if request.type == OrderType.TRAILING_STOP:
        if trails != 1:
            raise InvalidRequest("trailing_stop orders need exactly one of trail_price or trail_percent")
        if request.time_in_force not in (TimeInForce.DAY, TimeInForce.GTC):
            raise InvalidRequest("trailing_stop orders take time_in_force day or gtc")
    elif trails:
        raise InvalidRequest("trail_price and trail_percent are only for trailing_stop orders")
    for name in ("limit_price_units", "stop_price_units", "trail_price_units", "trail_percent_units"):
        value = getattr(request, name)
        if value is not None and value <= 0:
            raise InvalidRequest(f"{name.removesuffix('_units')} must be positive")
    if (
        request.trail_percent_units is not None
        and request.trail_percent_units >= 100 * matching.PERCENT_SCALE
    ):
        raise InvalidRequest("trail_percent must be below 100")
    for name in ("limit_price", "stop_price"):
        units = getattr(request, f"{name}_units")
        if units is not None and not price_increment_valid(units):
            # Alpaca's wording, so bots that match on it keep working.
            raise InvalidRequest(
                f"invalid {name} {units_to_str(units)}. sub-penny increment does not fulfill minimum pricing criteria"
            )
    if request.extended_hours and (
        request.type != OrderType.LIMIT or request.time_in_force != TimeInForce.DAY
    ):
        raise InvalidRequest("extended hours order must be DAY limit orders")
    if request.client_order_id is not None and not 0 < len(request.client_order_id) <= 48:
        raise InvalidRequest("client_order_id must be 1 to 48 characters")
    _validate_class(request)


ADVANCED_ENTRY_TYPES = (OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT)
ADVANCED_TIME_IN_FORCE = (TimeInForce.DAY, TimeInForce.GTC)
# Alpaca's smallest distance between a leg's price and the entry's base price: one cent.
LEG_PRICE_GAP_UNITS = 100


def _validate_class(request: OrderRequest) -> None:
    """What an advanced order must be, before prices are compared with its base price."""
    order_class = request.order_class
    if order_class not in OrderClass.values:
        raise InvalidRequest(f"invalid order_class {order_class!r}")
    take_profit = request.take_profit_limit_units is not None
    stop_loss = request.stop_loss_stop_units is not None
    if request.stop_loss_limit_units is not None and not stop_loss:
        raise InvalidRequest("stop_loss.stop_price is required")
    if order_class == OrderClass.SIMPLE:
        if take_profit or stop_loss:
            raise InvalidRequest("take_profit and stop_loss are only for bracket, oco and oto orders")
        return
    if request.time_in_force not in ADVANCED_TIME_IN_FORCE:
        raise InvalidRequest(f"{order_class} orders must be day or gtc orders")
    if request.fractional:
        raise InvalidRequest(f"{order_class} orders must be whole-share qty orders (no notional or fraction)")
    if request.extended_hours:
        raise InvalidRequest(f"{order_class} orders cannot trade in extended hours")
    if order_class == OrderClass.BRACKET and not (take_profit and stop_loss):
        raise InvalidRequest("bracket orders need both take_profit and stop_loss")
    if order_class == OrderClass.OTO and take_profit == stop_loss:
        raise InvalidRequest("oto orders need either take_profit or stop_loss, not both")
    if order_class == OrderClass.OCO:
        if not (take_profit and stop_loss):
            raise InvalidRequest("oco orders need both take_profit and stop_loss")
        if request.type != OrderType.LIMIT:
            raise InvalidRequest("oco orders must be limit orders")
    elif request.type not in ADVANCED_ENTRY_TYPES:
        raise InvalidRequest(f"{order_class} orders must be market, limit, stop or stop_limit orders")
    for name, units in (
        ("take_profit.limit_price", request.take_profit_limit_units),
        ("stop_loss.stop_price", request.stop_loss_stop_units),
        ("stop_loss.limit_price", request.stop_loss_limit_units),
    ):
        if units is None:
            continue
        if units <= 0:
            raise InvalidRequest(f"{name} must be positive")
        if not price_increment_valid(units):
            raise InvalidRequest(
                f"invalid {name} {units_to_str(units)}. sub-penny increment does not fulfill minimum pricing criteria"
            )


def _base_price_units(request: OrderRequest, quote: LatestQuote) -> int:
    """The price the entry is expected to fill at, which the legs' prices must lie beyond (as
    Alpaca's base_price): a limit's limit, a stop's stop, else the quote's touch."""
    if request.limit_price_units is not None:
        return request.limit_price_units
    if request.stop_price_units is not None:
        return request.stop_price_units
    return quote.ask if request.side == OrderSide.BUY else quote.bid


def _validate_leg_prices(request: OrderRequest, quote: LatestQuote) -> None:
    """Take-profit beyond the entry and stop-loss on the other side of it, by a cent at least:
    above and below for a buy, the reverse for a sell (for an oco, whose take-profit is the
    order itself, the stop-loss against the take-profit). Alpaca's wording."""
    if request.order_class == OrderClass.SIMPLE:
        return
    buy = request.side == OrderSide.BUY
    if request.order_class == OrderClass.OCO:
        assert request.take_profit_limit_units is not None and request.stop_loss_stop_units is not None
        # The exit legs' side is the order's: a sell takes profit above and stops below.
        if (request.stop_loss_stop_units < request.take_profit_limit_units) == buy:
            relation = "<" if not buy else ">"
            raise InvalidRequest(f"stop_loss.stop_price must be {relation} take_profit.limit_price")
        return
    base = _base_price_units(request, quote)
    gap = units_to_str(LEG_PRICE_GAP_UNITS)
    take_profit = request.take_profit_limit_units
    if take_profit is not None:
        if buy and take_profit < base + LEG_PRICE_GAP_UNITS:
            raise InvalidRequest(f"take_profit.limit_price must be >= base_price + {gap}")
        if not buy and take_profit > base - LEG_PRICE_GAP_UNITS:
            raise InvalidRequest(f"take_profit.limit_price must be <= base_price - {gap}")
    stop = request.stop_loss_stop_units
    if stop is not None:
        if buy and stop > base - LEG_PRICE_GAP_UNITS:
            raise InvalidRequest(f"stop_loss.stop_price must be <= base_price - {gap}")
        if not buy and stop < base + LEG_PRICE_GAP_UNITS:
            raise InvalidRequest(f"stop_loss.stop_price must be >= base_price + {gap}")


def _validate_size(request: OrderRequest) -> None:
    """Quantity or notional, and what a fractional or notional order may be (Alpaca's rules)."""
    if (request.qty is None) == (request.notional_cents is None):
        raise InvalidRequest("give either qty or notional")
    if request.qty is not None and not 0 < request.qty <= shares_to_units(settings.ORDER_MAX_QTY):
        raise InvalidRequest(f"qty must be above 0 and at most {settings.ORDER_MAX_QTY}")
    if request.notional_cents is not None and request.notional_cents < NOTIONAL_MIN_CENTS:
        raise InvalidRequest("notional must be at least $1.00")
    if not request.fractional:
        return
    what = "notional orders" if request.notional_cents is not None else "fractional orders"
    if request.type not in FRACTIONAL_ORDER_TYPES:
        raise InvalidRequest(f"{what} must be market or limit orders")
    if request.time_in_force not in FRACTIONAL_TIME_IN_FORCE:
        raise InvalidRequest(f"{what} must be day orders")
    if request.extended_hours:
        raise InvalidRequest(f"{what} cannot trade in extended hours")


def _order_size(request: OrderRequest, quote: LatestQuote) -> int:
    """The order's quantity units: its qty, or what its notional buys or sells at the price it
    fills at (the limit for a limit order, the quote's touch for a market order), rounded down
    so a fill never spends more than the notional."""
    if request.qty is not None:
        return request.qty
    assert request.notional_cents is not None
    if request.limit_price_units is not None:
        price = request.limit_price_units
    else:
        price = quote.ask if request.side == OrderSide.BUY else quote.bid
    qty = qty_for_value(cents=request.notional_cents, price_units=price)
    if qty <= 0:
        raise InvalidRequest("notional is too small to buy any quantity at this price")
    # The size limit holds for every order, and it keeps a huge notional's quantity inside the
    # 64-bit column instead of failing the insert.
    if qty > shares_to_units(settings.ORDER_MAX_QTY):
        raise InvalidRequest(f"notional comes to more than {settings.ORDER_MAX_QTY} shares at this price")
    return qty


def _refuse_fractional_short(*, position_qty: int) -> None:
    """Alpaca does not short fractions of a share: a short position is whole shares."""
    if position_qty < 0 and position_qty % QTY_SCALE:
        raise Forbidden("fractional orders cannot open or leave a fractional short position")


def _asset_refuse(asset: Asset | None, symbol: str) -> Asset:
    """The asset an order names, if it may be traded now."""
    if asset is None:
        raise InvalidRequest(f"asset {symbol!r} not found")
    if not (asset.active and asset.tradable):
        raise InvalidRequest(f"asset {asset.symbol} is not tradable")
    if asset.halted:
        raise Forbidden(f"asset {asset.symbol} is halted")
    return asset


@dataclass(frozen=True)
class PositionState:
    """An account's position in one symbol as a fill starts from it (zeros: none yet)."""

    qty: int = 0
    qty_held: int = 0
    cost_basis_cents: int = 0
    exists: bool = False


@dataclass(frozen=True)
class _Placement:
    """What placing an order reads, in one statement under the account's lock: the account with
    its game and rules, the asset, the account's position in it, which opening intents it has
    open orders for (``_position_intent``), and the commission rates it pays."""

    account: Account
    player: GamePlayer | None
    asset: Asset | None
    position: PositionState
    open_intents: frozenset[str]
    rates: CommissionRates


# The asset's fields an order needs (its checks, the answer's symbol and class); the rest defer.
_PLACEMENT_ASSET_FIELDS = ("id", "symbol", "asset_class", "active", "tradable", "halted", "shortable")
_PLACEMENT_PLAN_FIELDS = ("per_order_cents", "per_share_centi_cents", "minimum_cents")


def _placement_queryset(account_id: uuid.UUID | str, symbol: str) -> QuerySet[Account]:
    """Placement's one read (``_placement_read``) as a queryset."""
    assets = Asset.objects.filter(symbol=symbol)
    positions = Position.objects.filter(account_id=OuterRef("pk"), asset__symbol=symbol)
    open_orders = Order.objects.filter(
        account_id=OuterRef("pk"), asset__symbol=symbol, status__in=OPEN_ORDER_STATUSES
    )
    # The primary key breaks a tie, so two plans made at one instant never mix their fields.
    plans = CommissionPlan.objects.filter(active=True).order_by("-created_at", "-pk")
    annotations: dict[str, Subquery | Exists] = {
        f"placement_asset_{name}": Subquery(assets.values(name)[:1]) for name in _PLACEMENT_ASSET_FIELDS
    }
    annotations |= {
        f"placement_position_{name}": Subquery(positions.values(name)[:1])
        for name in ("qty", "qty_held", "cost_basis_cents")
    }
    annotations |= {
        f"placement_open_{intent}": Exists(open_orders.filter(position_intent=intent))
        for intent in (PositionIntent.BUY_TO_OPEN, PositionIntent.SELL_TO_OPEN)
    }
    annotations |= {
        f"placement_plan_{name}": Subquery(plans.values(name)[:1]) for name in _PLACEMENT_PLAN_FIELDS
    }
    return (
        Account.objects.select_related("game_player__game__commission_plan")
        .annotate(**annotations)
        .filter(pk=account_id)[:1]
    )


# Compiled once per thread (trading/prepared.py): building and compiling the read's sixteen
# subqueries cost about 15 ms of CPU an order, running the statement about 0.1 ms.
_PLACEMENT = PreparedQuery(
    _placement_queryset,
    account_id=Account._meta.get_field("id"),
    symbol=Asset._meta.get_field("symbol"),
)


def _placement_read(account_id: uuid.UUID | str, symbol: str) -> _Placement:
    """Everything order placement reads, as one statement after the account's lock.

    On PostgreSQL the lock is a statement of its own, taken first: a locking read that waited
    re-reads only the locked row (read committed), so the game, the position and the open
    orders joined to it would be as they were before the wait; read after it, they are as the
    transaction that held the lock left them (a game's end, a removal, a fill of the same
    account). SQLite has no row locks: its IMMEDIATE transaction took the write lock at BEGIN,
    so the read is already after every other writer.

    The game's commission plan comes with the game; the default one (the newest active plan)
    as three small subqueries, so a plan changed or added is exact from the next order on
    without a cache to invalidate."""
    try:
        _lock_account(account_id)
        found = _PLACEMENT.run(account_id=account_id, symbol=symbol)
    except (ValueError, TypeError, ValidationError):
        raise NotFound("account not found") from None
    if not found:
        raise NotFound("account not found")
    row = found[0]
    values = row.__dict__
    asset = None
    if values["placement_asset_id"] is not None:
        # from_db takes the loaded fields' values in the model's field order.
        loaded = [
            field.attname for field in Asset._meta.concrete_fields if field.attname in _PLACEMENT_ASSET_FIELDS
        ]
        asset = Asset.from_db(
            connection.alias, loaded, [values[f"placement_asset_{name}"] for name in loaded]
        )
    position = PositionState()
    if values["placement_position_qty"] is not None:
        position = PositionState(
            qty=values["placement_position_qty"],
            qty_held=values["placement_position_qty_held"],
            cost_basis_cents=values["placement_position_cost_basis_cents"],
            exists=True,
        )
    player = _game_player(row)
    game_plan = player.game.commission_plan if player is not None else None
    if game_plan is not None:
        rates = CommissionRates.of(game_plan)
    elif values["placement_plan_per_order_cents"] is not None:
        rates = CommissionRates(**{name: values[f"placement_plan_{name}"] for name in _PLACEMENT_PLAN_FIELDS})
    else:
        rates = CommissionRates.of(None)
    return _Placement(
        account=row,
        player=player,
        asset=asset,
        position=position,
        open_intents=frozenset(
            intent
            for intent in (PositionIntent.BUY_TO_OPEN, PositionIntent.SELL_TO_OPEN)
            if values[f"placement_open_{intent}"]
        ),
        rates=rates,
    )


def _quote_for(symbol: str) -> LatestQuote:
    quote = latest_quotes(symbols=[symbol]).get(symbol)
    if quote is None:
        raise InvalidRequest(f"no market data for {symbol} yet")
    return quote


def _reserve_estimate_units(request: OrderRequest, quote: LatestQuote) -> int:
    """The per-share price a resting buy holds buying power at."""
    if request.type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        assert request.limit_price_units is not None
        return request.limit_price_units
    if request.type == OrderType.STOP:
        assert request.stop_price_units is not None
        return max(request.stop_price_units, quote.ask)
    if request.type == OrderType.MARKET:  # an auction's market order, resting until its auction
        return quote.ask
    # Trailing buy: fills at most one trail above the best price since placement.
    resting = matching.RestingOrder(
        id="",
        symbol=request.symbol,
        side="buy",
        type="trailing_stop",
        trail_price=request.trail_price_units,
        trail_percent=request.trail_percent_units,
    )
    return max(quote.ask, matching.trailing_stop_level(resting, quote.price))


def order_place(
    *, account_id: uuid.UUID | str, request: OrderRequest, now: dt.datetime | None = None
) -> Order:
    """Place an order: fill it now at the quote if it is marketable, otherwise let it rest.

    The returned order's ``accepted_state`` is the order as accepted, before any fill: what its
    ``new`` event shows and POST /v2/orders answers (README, Order lifecycle).

    Raises Forbidden (403) for insufficient buying power or shares, InvalidRequest (422) for
    anything malformed; nothing is written in either case.
    """
    return _order_place(account_id=account_id, request=request, now=now or timezone.now())


def _order_place(
    *,
    account_id: uuid.UUID | str,
    request: OrderRequest,
    now: dt.datetime,
    order_id: uuid.UUID | None = None,
    margin_call: bool = False,
) -> Order:
    if (
        request.order_class == OrderClass.OCO
        and request.type == OrderType.LIMIT
        and request.take_profit_limit_units is not None
    ):
        # An oco order is its take-profit: alpaca-py sends no limit_price of its own for one.
        if request.limit_price_units not in (None, request.take_profit_limit_units):
            raise InvalidRequest("an oco order's limit_price is its take_profit.limit_price")
        request = replace(request, limit_price_units=request.take_profit_limit_units)
    _validate(request)
    auction = _auction_session(request, now)
    # As on Alpaca, an order placed while the session is closed is accepted, not routed: it
    # executes nothing until the market routes it at the open (orders_route_accepted).
    held = auction is None and not calendar.always_open() and not calendar.clock_at(now).is_open
    symbol = request.symbol.upper()
    # From Redis, before the transaction: no SQLite write lock is held across it. A symbol
    # that names no asset is refused below, before its missing quote is.
    quote = latest_quotes(symbols=[symbol]).get(symbol)
    try:
        with transaction.atomic():
            # The account, its game and its rules, the asset and the position, read under the
            # account's lock: an end or a removal that committed first is refused here, one that
            # commits after cancels this order.
            placement = _placement_read(account_id, symbol)
            asset = _asset_refuse(placement.asset, request.symbol)
            if quote is None:
                raise InvalidRequest(f"no market data for {asset.symbol} yet")
            account, player = placement.account, placement.player
            if account.trading_suspended and not margin_call:
                raise Forbidden("trading is suspended for this account")
            if not margin_call:
                _game_refuse(player=player, request=request, now=now)
            qty = _order_size(request, quote)
            _validate_leg_prices(request, quote)
            intent = _position_intent(placement=placement, asset=asset, request=request, qty=qty)
            _refuse_class_intent(request, intent)
            if not margin_call:
                _game_refuse_position(
                    player=player,
                    account=account,
                    asset=asset,
                    position_qty=placement.position.qty,
                    intent=intent,
                    qty=qty,
                    quote=quote,
                    request=request,
                )
            order = Order(
                id=order_id or uuid.uuid4(),
                account_id=account.pk,
                client_order_id=request.client_order_id or str(uuid.uuid4()),
                asset=asset,
                side=request.side,
                position_intent=intent,
                type=request.type,
                time_in_force=request.time_in_force,
                qty=qty,
                notional_cents=request.notional_cents,
                limit_price_units=request.limit_price_units,
                stop_price_units=request.stop_price_units,
                trail_price_units=request.trail_price_units,
                trail_percent_units=request.trail_percent_units,
                extended_hours=request.extended_hours,
                order_class=request.order_class,
                submitted_at=now,
                created_at=now,
                updated_at=now,
                expires_at=_expires_at(request, auction, now),
                status=OrderStatus.ACCEPTED if held else OrderStatus.NEW,
            )
            # A simple order is written when its fate is known: one INSERT for one that fills
            # whole at once (_execute_fill), otherwise before it rests. An advanced one now: its
            # legs point at it.
            if request.order_class != OrderClass.SIMPLE:
                order.save(force_insert=True)
            # Before the entry can fill: a fill at placement activates its legs at once.
            legs = _legs_create(order=order, request=request, now=now)
            order.accepted_leg_states = {str(leg.pk): OrderState.of(leg) for leg in legs}
            # The answer is built from these objects, not from rows read back: the order as
            # accepted (accepted_state) and its legs as held in memory, overlaid with their
            # accepted states, even when the entry fills at once and activates them.
            order.leg_orders = legs
            # An auction order waits for its auction (realtime/triggers.py), whatever the quote, and
            # an accepted one for the open.
            decision = (
                None if auction or held else matching.evaluate(order_as_resting(order), quote.as_quote())
            )
            if decision is not None and decision.action is matching.Action.FILL:
                assert decision.price is not None
                if decision.qty is None or decision.qty >= qty:
                    _order_accept(order, now)
                    _legs_announce(legs, now)
                    _execute_fill(
                        order=order,
                        account=account,
                        price_units=decision.price,
                        tick_seq=quote.seq,
                        resting=False,
                        now=now,
                        placed=placement,
                    )
                    return order
                if request.time_in_force == TimeInForce.FOK:
                    decision = None  # the touch cannot fill it whole: it is canceled below
            # Every order must be affordable when submitted, as on Alpaca, even one that ends at once.
            _order_rest(
                order=order,
                request=request,
                quote=quote,
                decision=decision,
                rates=placement.rates,
                now=now,
            )
            if order._state.adding:
                _ORDER_INSERT.save(order)  # with what it holds: one INSERT
            _order_accept(order, now)
            _legs_announce(legs, now)
            if decision is not None and decision.action is matching.Action.FILL:
                # Larger than the touch: what it shows fills now, from the order's own reservation
                # or held shares, and the rest waits for the following quotes (docs/architecture.md,
                # Partial fills).
                assert decision.price is not None
                _execute_fill(
                    order=order,
                    account=account,
                    price_units=decision.price,
                    qty=decision.qty,
                    tick_seq=quote.seq,
                    resting=True,
                    now=now,
                )
            if request.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
                # IOC: what the touch filled stays, the rest is canceled; FOK: canceled unfilled.
                _order_close(order=order, status=OrderStatus.CANCELED, now=now)
            return order
    except IntegrityError as error:
        if "client_order_id" in str(error) or "order_client_id_unique" in str(error):
            raise InvalidRequest("client_order_id must be unique") from None
        raise


def _refuse_class_intent(request: OrderRequest, intent: str) -> None:
    """A bracket's or oto's entry opens (or adds to) a position its legs then close; an oco's two
    orders close one (Alpaca's oco is an exit order)."""
    if request.order_class == OrderClass.OCO and intent not in CLOSING_INTENTS:
        raise InvalidRequest("oco orders are exit orders: they must close a position the account holds")
    if request.order_class in (OrderClass.BRACKET, OrderClass.OTO) and intent in CLOSING_INTENTS:
        raise InvalidRequest(
            f"{request.order_class} orders must open or add to a position (their legs close it);"
            " to exit one, use an oco order"
        )


def _legs_create(*, order: Order, request: OrderRequest, now: dt.datetime) -> list[Order]:
    """An advanced order's legs (README, Advanced orders), on the other side of a bracket's or
    oto's entry, held until it fills; an oco's stop-loss leg, on its own side, active with it.

    Legs hold nothing of their own: a held leg waits for its entry's shares or cash, and the two
    exit orders of a bracket or oco share one hold (docs/architecture.md, Advanced orders).
    """
    if request.order_class == OrderClass.SIMPLE:
        return []
    specs: list[tuple[str, int | None, int | None]] = []  # (type, limit, stop)
    if request.order_class != OrderClass.OCO and request.take_profit_limit_units is not None:
        specs.append((OrderType.LIMIT, request.take_profit_limit_units, None))
    if request.stop_loss_stop_units is not None:
        stop_type = OrderType.STOP if request.stop_loss_limit_units is None else OrderType.STOP_LIMIT
        specs.append((stop_type, request.stop_loss_limit_units, request.stop_loss_stop_units))
    if request.order_class == OrderClass.OCO:
        side, status, intent = order.side, order.status, order.position_intent
    else:
        # The legs close what the entry opens.
        side = OrderSide.SELL if order.side == OrderSide.BUY else OrderSide.BUY
        status = OrderStatus.HELD
        intent = PositionIntent.SELL_TO_CLOSE if side == OrderSide.SELL else PositionIntent.BUY_TO_CLOSE
    legs = []
    for index, (order_type, limit, stop) in enumerate(specs):
        legs.append(
            Order.objects.create(
                account_id=order.account_id,
                client_order_id=str(uuid.uuid4()),
                asset=order.asset,
                side=side,
                position_intent=intent,
                type=order_type,
                time_in_force=order.time_in_force,
                qty=order.qty,
                limit_price_units=limit,
                stop_price_units=stop,
                order_class=order.order_class,
                parent=order,
                # A microsecond apart, so the legs list in a stable order after their entry.
                submitted_at=now + dt.timedelta(microseconds=index + 1),
                expires_at=order.expires_at,
                status=status,
            )
        )
    return legs


def _legs_announce(legs: list[Order], now: dt.datetime) -> None:
    """An oco's stop-loss leg is taken with its order: its own ``new`` (or ``accepted``) event.
    Held legs are announced when they activate."""
    for leg in legs:
        if leg.status != OrderStatus.HELD:
            order_event_publish_on_commit(
                _event("accepted" if leg.status == OrderStatus.ACCEPTED else "new", leg, now)
            )


def _legs_activate(*, order: Order, account: Account, now: dt.datetime) -> None:
    """The entry filled: its held legs become ``new`` (with their events) and join the market's
    book, and what they close (the entry's shares, or its short) is held once for them all.
    Legs whose position moved meanwhile so that it cannot be held are canceled instead."""
    if order.order_class == OrderClass.SIMPLE or order.parent_id is not None:
        return  # only an entry has legs to activate
    legs = list(
        Order.objects.filter(parent_id=order.pk, status=OrderStatus.HELD)
        .select_related("asset")
        .order_by("submitted_at", "id")
    )
    if not legs:
        return
    try:
        with transaction.atomic():
            _hold_closing_qty(legs[0])
    except Forbidden:
        for leg in legs:
            _order_close(order=leg, status=OrderStatus.CANCELED, now=now, cascade=False)
        return
    Order.objects.filter(pk__in=[leg.pk for leg in legs]).update(status=OrderStatus.NEW, updated_at=now)
    for leg in legs:
        leg.status, leg.updated_at = OrderStatus.NEW, now
        order_event_publish_on_commit(_event("new", leg, now))


def _linked(order: Order) -> Q:
    """The orders that close with this one: its legs, and the other exit order it shares its
    hold with (a bracket leg's sibling, an oco leg's take-profit)."""
    linked = Q(parent_id=order.pk)
    if order.parent_id is not None:
        if order.order_class == OrderClass.OCO:
            linked |= Q(pk=order.parent_id)
        elif order.order_class == OrderClass.BRACKET:
            linked |= Q(parent_id=order.parent_id) & ~Q(pk=order.pk)
    return linked


def _active_linked_exists(order: Order) -> bool:
    """Whether another open, active exit order shares this one's held shares: then the last of
    them to close gives them back, so they are released exactly once."""
    if order.order_class == OrderClass.SIMPLE:
        return False
    return (
        Order.objects.filter(_linked(order), status__in=OPEN_ORDER_STATUSES, side=order.side)
        .exclude(status=OrderStatus.HELD)
        .exists()
    )


def _linked_close(
    *,
    order: Order,
    status: str,
    now: dt.datetime,
    exits_only: bool = False,
    ended_at: dt.datetime | None = None,
) -> None:
    """Close what closes with ``order``: canceling or expiring an entry ends its held legs, and
    an exit order that ends (filled, canceled, expired) ends the one it shares its hold with.
    ``exits_only``: only the latter (an entry that fills keeps its legs: they activate)."""
    if order.order_class == OrderClass.SIMPLE:
        return
    linked = Order.objects.filter(_linked(order), status__in=OPEN_ORDER_STATUSES).select_related("asset")
    if exits_only:
        linked = linked.filter(side=order.side)
    for other in linked.order_by("submitted_at", "id"):
        _order_close(order=other, status=status, now=now, cascade=False, ended_at=ended_at)


def _auction_session(request: OrderRequest, now: dt.datetime) -> calendar.Session | None:
    """The session whose auction an opg or cls order goes to; a refusal when it is too late."""
    if request.time_in_force not in AUCTION_TIME_IN_FORCE:
        return None
    session = calendar.auction_session(request.time_in_force, now)
    if session is None:
        if request.time_in_force == TimeInForce.OPG:
            raise InvalidRequest(
                "opg orders are taken until 2 minutes before the open, and not while the session is open"
            )
        raise InvalidRequest("cls orders are taken until 10 minutes before the close")
    return session


def _expires_at(
    request: OrderRequest, auction: calendar.Session | None, now: dt.datetime
) -> dt.datetime | None:
    """Day orders end with their trading day; auction orders with their session, should the
    auction not have run (an opening auction executes or cancels them long before)."""
    if auction is not None:
        return auction.close
    return calendar.next_day_boundary(now) if request.time_in_force == TimeInForce.DAY else None


def _order_accept(order: Order, now: dt.datetime) -> None:
    """The order is taken: its ``new`` event (``accepted`` while the session is closed), with
    the order as it is now."""
    event = _event("accepted" if order.status == OrderStatus.ACCEPTED else "new", order, now)
    order.accepted_state = event.order_state
    order_event_publish_on_commit(event)


def _order_rest(
    *,
    order: Order,
    request: OrderRequest,
    quote: LatestQuote,
    decision: matching.Decision | None,
    rates: CommissionRates,
    now: dt.datetime,
) -> None:
    update: dict[str, object] = {}
    if decision is not None and decision.action is matching.Action.TRIGGER:
        update["stop_triggered_at"] = now
    if order.type == OrderType.TRAILING_STOP:
        update["high_water_mark_units"] = (decision.water_mark if decision else None) or quote.price
    if order.position_intent in CLOSING_INTENTS:
        _hold_closing_qty(order)
    else:
        if order.position_intent == PositionIntent.BUY_TO_OPEN:
            reserve = trade_value_cents(price_units=_reserve_estimate_units(request, quote), qty=order.qty)
        else:
            reserve = margin.short_open_reserve_cents(
                ask_units=quote.ask, limit_units=order.limit_price_units, qty=order.qty
            )
        reserve += rates.cents(order.qty)
        if not Account.objects.filter(
            pk=order.account_id, cash_cents__gte=F("reserved_cents") + reserve
        ).update(reserved_cents=F("reserved_cents") + reserve):
            raise Forbidden("insufficient buying power")
        update["reserved_cents"] = reserve
    for field, value in update.items():
        setattr(order, field, value)
    if update and not order._state.adding:  # an order not written yet is inserted with them
        Order.objects.filter(pk=order.pk).update(**update)


def _position_intent(*, placement: _Placement, asset: Asset, request: OrderRequest, qty: int) -> str:
    """What the order does to the position, and whether it may: read under the account's lock,
    so no other order of the account moves the position or its holds meanwhile.

    As on Alpaca, one order never carries a position past zero (a sell larger than the long, or a
    buy larger than the short, is refused for insufficient quantity), shorting needs the account's
    permission and a shortable asset, shorts are whole shares, and an order may not open one side
    while an order opening the other is open (docs/architecture.md, Short selling).
    """
    account = placement.account
    position_qty, held = placement.position.qty, placement.position.qty_held
    if request.side == OrderSide.BUY:
        intent = PositionIntent.BUY_TO_CLOSE if position_qty < 0 else PositionIntent.BUY_TO_OPEN
    else:
        intent = PositionIntent.SELL_TO_CLOSE if position_qty > 0 else PositionIntent.SELL_TO_OPEN
    if request.position_intent is not None and request.position_intent != intent:
        # Alpaca's wording.
        raise Forbidden(f"position intent mismatch. inferred {intent.replace('_', ' ')}")
    if intent in CLOSING_INTENTS:
        available = abs(position_qty) - held
        if qty > available:
            raise Forbidden(
                f"insufficient qty available for order (requested: {qty_to_str(qty)}, "
                f"available: {qty_to_str(available)})"
            )
        if intent == PositionIntent.BUY_TO_CLOSE:
            _refuse_fractional_short(position_qty=position_qty + qty)
        return intent
    if intent == PositionIntent.SELL_TO_OPEN:
        if not account.shorting_enabled:
            player = placement.player
            if player is not None and not player.game.shorting_allowed:
                raise Forbidden(GAME_NO_SHORTING)
            raise Forbidden(
                f"insufficient qty available for order (requested: {qty_to_str(qty)}, available: 0)"
            )
        if not asset.shortable:
            raise Forbidden(f'asset "{asset.symbol}" cannot be sold short')
        if request.notional_cents is not None or qty % QTY_SCALE:
            raise Forbidden("fractional orders cannot open or leave a fractional short position")
        conflicting, message = (
            PositionIntent.BUY_TO_OPEN,
            "cannot open a short sell while a long buy order is open",
        )
    else:
        conflicting, message = (
            PositionIntent.SELL_TO_OPEN,
            "cannot open a long buy while a short sell order is open",
        )
    if conflicting in placement.open_intents:
        raise Forbidden(message)
    return intent


def _hold_closing_qty(order: Order) -> None:
    """Set aside what a resting closing order closes (shares of a long, or of a short for a
    cover), so the account's closing orders together never carry the position past zero."""
    positions = Position.objects.filter(account_id=order.account_id, asset_id=order.asset_id)
    if order.position_intent == PositionIntent.SELL_TO_CLOSE:
        positions = positions.filter(qty__gte=F("qty_held") + order.qty)
    else:
        positions = positions.filter(qty__lte=-order.qty - F("qty_held"))
    if not positions.update(qty_held=F("qty_held") + order.qty):
        raise Forbidden("insufficient qty available for order")


def order_as_resting(order: Order) -> matching.RestingOrder:
    """An order as the pure matching code sees it (on placement here, in the market's book)."""
    resting = matching.RestingOrder(
        id=str(order.pk),
        symbol=order.asset.symbol,
        side=order.side,
        type=order.type,
        limit=order.limit_price_units,
        stop=order.stop_price_units,
        trail_price=order.trail_price_units,
        trail_percent=order.trail_percent_units,
        water_mark=order.high_water_mark_units,
        stop_triggered=order.stop_triggered_at is not None,
        qty=order.qty - order.filled_qty,
    )
    if order.filled_qty:
        return matching.after_partial_fill(resting, resting.qty or 0)
    return resting


def _event(
    name: str,
    order: Order,
    now: dt.datetime,
    *,
    replaced_by: uuid.UUID | None = None,
    execution_id: uuid.UUID | None = None,
    **extra: int | None,
) -> OrderEvent:
    """An event with the order as it is at this point of the caller's transaction."""
    return OrderEvent(
        event=name,
        account_id=str(order.account_id),
        order_id=str(order.pk),
        symbol=order.asset.symbol,
        at=now,
        order_state=OrderState.of(order, replaced_by=str(replaced_by) if replaced_by else None),
        execution_id=str(execution_id) if execution_id else None,
        **extra,
    )


# A fill's writes, compiled once (trading/prepared.py): through the ORM, building and compiling
# them cost more CPU than the rest of a filled market order.
_ORDER_INSERT = PreparedInsert(Order)
_FILL_INSERT = PreparedInsert(Fill)
_CASH_ENTRY_INSERT = PreparedInsert(CashEntry)
_POSITION_INSERT = PreparedInsert(Position)
_POSITION_WRITE = PreparedStatement(
    lambda account_id, asset_id, qty, qty_held, cost_basis_cents, updated_at: (
        Position.objects.filter(account_id=account_id, asset_id=asset_id),
        {"qty": qty, "cost_basis_cents": cost_basis_cents, "qty_held": qty_held, "updated_at": updated_at},
    ),
    account_id=Account._meta.get_field("id"),
    asset_id=Asset._meta.get_field("id"),
    qty=Position._meta.get_field("qty"),
    qty_held=Position._meta.get_field("qty_held"),
    cost_basis_cents=Position._meta.get_field("cost_basis_cents"),
    updated_at=Position._meta.get_field("updated_at"),
)
# The cash a fill moves and what it holds, in one conditional UPDATE (see _execute_fill).
_ACCOUNT_FILL_MOVE = PreparedStatement(
    lambda account_id, cash_change, reserved_change: (
        Account.objects.filter(
            pk=account_id, cash_cents__gte=F("reserved_cents") + reserved_change - cash_change
        ),
        {
            "cash_cents": F("cash_cents") + cash_change,
            "reserved_cents": F("reserved_cents") + reserved_change,
        },
    ),
    account_id=Account._meta.get_field("id"),
    cash_change=Account._meta.get_field("cash_cents"),
    reserved_change=Account._meta.get_field("reserved_cents"),
)


def _execute_fill(
    *,
    order: Order,
    account: Account,
    price_units: int,
    tick_seq: int | None,
    resting: bool,
    now: dt.datetime,
    qty: int | None = None,
    water_mark_units: int | None = None,
    placed: _Placement | None = None,
) -> None:
    """Execute ``qty`` quantity units of an order (None: all that is left) at ``price_units``,
    inside the caller's transaction: one Fill, a ``partial_fill`` event while some is left, a
    ``fill`` event for the last execution.

    A resting order's reservation (a buy's cash, a sell's held shares) is released in proportion
    to the execution, the last one releasing all that is left. The order must still be open
    (row lock) and the cash or shares must be there (conditional updates); otherwise Forbidden
    rolls the caller back.

    ``placed``: the order is being placed by this very transaction, under the account's lock,
    with nothing held or filled yet (a fill at placement), and this is what its placement read.
    The order in memory is then its row (a simple order's not written yet: it is inserted here,
    filled), and the position and the commission rates are as read.
    """
    if placed is None:
        _lock_account(account.pk)
        # Claim the order before moving money: a cancel that won the race has already given the
        # reservation back, and releasing it twice would corrupt reserved cash. Every figure
        # comes from this locked row: an execution committed since the caller read the order
        # changed them.
        row = _order_locked(order.pk)
        if row is None or row.status == OrderStatus.HELD:
            raise NotCancelable("order is no longer open")
        rates = commission_rates(account_id=account.pk)
    else:
        row, rates = order, placed.rates
    # An exit order filling ends the one it shares its hold with, first, so that one gives
    # back nothing this fill consumes.
    _linked_close(order=order, status=OrderStatus.CANCELED, now=now, exits_only=True)
    leaves = row.qty - row.filled_qty
    qty = leaves if qty is None else min(qty, leaves)
    if qty <= 0:
        raise NotCancelable("order has nothing left to fill")
    complete = qty == leaves
    released = row.reserved_cents if complete else row.reserved_cents * qty // leaves
    filled = row.filled_qty + qty
    value = trade_value_cents(price_units=price_units, qty=qty)
    # Each execution pays what the commission of all executions so far adds, so an order pays
    # the same commission whether it filled at once or in parts.
    commission = rates.cents(filled) - (rates.cents(row.filled_qty) if row.filled_qty else 0)
    average = price_units if not row.filled_qty else _average_price(order.pk, price_units, qty, filled)
    status = OrderStatus.FILLED if complete else OrderStatus.PARTIALLY_FILLED
    if water_mark_units is not None:
        order.high_water_mark_units = water_mark_units
    filled_state: dict[str, object] = {
        "status": status,
        "filled_qty": filled,
        "filled_avg_price_units": average,
        "filled_at": now if complete else None,
        "reserved_cents": row.reserved_cents - released,
        "updated_at": now,
        "high_water_mark_units": order.high_water_mark_units,
    }
    if order._state.adding:
        # Filled whole as it is placed: its one INSERT writes it filled (_order_place).
        for field, state in filled_state.items():
            setattr(order, field, state)
        _ORDER_INSERT.save(order)
    else:
        Order.objects.filter(pk=order.pk).update(**filled_state)
    position_qty, realized, hold_change = _position_apply_fill(
        account=account,
        asset_id=order.asset_id,
        side=order.side,
        qty=qty,
        value_cents=value,
        held=resting and order.position_intent in CLOSING_INTENTS,
        now=now,
        # An advanced order's linked orders may move the position's holds before this (exit
        # orders closing with it): only a simple order's placement read is still the position.
        position=placed.position if placed is not None and order.order_class == OrderClass.SIMPLE else None,
    )
    # One conditional update moves the cash and what is held from it (the order's reservation
    # released, a short's initial margin taken or given back), so buying power never goes below
    # zero: a purchase, or a short beyond the account's margin, is refused.
    cash_change = -(value + commission) if order.side == OrderSide.BUY else value - commission
    reserved_change = hold_change - released
    if not _ACCOUNT_FILL_MOVE.run(
        account_id=account.pk, cash_change=cash_change, reserved_change=reserved_change
    ):
        raise Forbidden("insufficient buying power")
    fill_id = uuid.uuid4()
    _FILL_INSERT.run([
        _FILL_INSERT.row(id=fill_id, order_id=order.pk, account_id=account.pk, asset_id=order.asset_id,
                         side=order.side, qty=qty, price_units=price_units, value_cents=value,
                         commission_cents=commission, realized_pl_cents=realized, tick_seq=tick_seq,
                         filled_at=now),
    ])  # fmt: skip
    kind = CashEntry.Kind.BUY if order.side == OrderSide.BUY else CashEntry.Kind.SELL
    entries = [
        _CASH_ENTRY_INSERT.row(id=uuid.uuid4(), account_id=account.pk, kind=kind, fill_id=fill_id,
                               created_at=now, amount_cents=-value if order.side == OrderSide.BUY else value,
                               memo=f"{order.side} {qty_to_str(qty)} {order.asset.symbol}"),
    ]  # fmt: skip
    if commission:
        entries.append(
            _CASH_ENTRY_INSERT.row(id=uuid.uuid4(), account_id=account.pk, kind=CashEntry.Kind.COMMISSION,
                                   fill_id=fill_id, created_at=now, amount_cents=-commission,
                                   memo=f"commission {order.asset.symbol}")
        )  # fmt: skip
    _CASH_ENTRY_INSERT.run(entries)
    order.status = status
    order.qty = row.qty
    order.filled_qty = filled
    order.filled_avg_price_units = average
    order.filled_at = now if complete else None
    order.reserved_cents = row.reserved_cents - released
    order.updated_at = now
    order_event_publish_on_commit(
        # The execution's id is its Fill's: Alpaca's execution_id on fill events.
        _event(
            "fill" if complete else "partial_fill",
            order,
            now,
            execution_id=fill_id,
            price_units=price_units,
            qty=qty,
            position_qty=position_qty,
        )
    )
    if complete:
        # Completely filled: a bracket's or oto's legs go to work.
        _legs_activate(order=order, account=account, now=now)


def _average_price(order_id: uuid.UUID, price_units: int, qty: int, filled: int) -> int:
    """The order's average fill price with one more execution, weighted by quantity, from its
    Fill rows (exact, not from the rounded average so far), rounded half-even to the price unit."""
    total = price_units * qty
    for fill_price, fill_qty in Fill.objects.filter(order_id=order_id).values_list("price_units", "qty"):
        total += fill_price * fill_qty
    return divide_half_even(total, filled)


def _position_apply_fill(
    *,
    account: Account,
    asset_id: uuid.UUID,
    side: str,
    qty: int,
    value_cents: int,
    held: bool,
    now: dt.datetime,
    position: PositionState | None = None,
) -> tuple[int, int, int]:
    """Apply a fill to the position; returns (new quantity, realised P&L in cents, change of the
    short's initial margin hold in cents).

    The position is read (unless the caller read it under the same lock: ``position``) and
    written back whole, in one INSERT or UPDATE: the account's lock, which every write to its
    positions takes first, keeps it as read in between.
    """
    if position is None:
        row = (
            Position.objects.select_for_update(no_key=True)
            .filter(account_id=account.pk, asset_id=asset_id)
            .values_list("qty", "qty_held", "cost_basis_cents")
            .first()
        )
        position = PositionState() if row is None else PositionState(*row, exists=True)
    after, realized = _position_after_fill(position, side=side, qty=qty, value_cents=value_cents)
    if held:
        after = replace(after, qty_held=after.qty_held - qty)
    if position.exists:
        _POSITION_WRITE.run(
            account_id=account.pk,
            asset_id=asset_id,
            qty=after.qty,
            qty_held=after.qty_held,
            cost_basis_cents=after.cost_basis_cents,
            updated_at=now,
        )
    else:
        # updated_at as its auto_now stamps a created row: the wall clock's instant.
        _POSITION_INSERT.run([
            _POSITION_INSERT.row(account_id=account.pk, asset_id=asset_id, qty=after.qty,
                                 qty_held=after.qty_held, cost_basis_cents=after.cost_basis_cents,
                                 updated_at=timezone.now()),
        ])  # fmt: skip
    hold_before = margin.short_hold_cents(qty=position.qty, cost_basis_cents=position.cost_basis_cents)
    hold_after = margin.short_hold_cents(qty=after.qty, cost_basis_cents=after.cost_basis_cents)
    return after.qty, realized, hold_after - hold_before


def _position_after_fill(
    position: PositionState, *, side: str, qty: int, value_cents: int
) -> tuple[PositionState, int]:
    """The position after a fill, and the fill's realised P&L in cents (pure).

    Cost basis is average cost: closing shares take their proportional share of the basis.
    """
    signed = qty if side == OrderSide.BUY else -qty
    position_qty, basis = position.qty, position.cost_basis_cents
    realized = 0
    remaining, remaining_value = qty, value_cents
    if position_qty and (position_qty > 0) != (signed > 0):
        closing = min(qty, abs(position_qty))
        closed_basis = divide_half_even(basis * closing, abs(position_qty))
        closing_value = divide_half_even(value_cents * closing, qty)
        realized = closing_value - closed_basis if position_qty > 0 else -closed_basis - closing_value
        basis -= closed_basis
        position_qty += closing if signed > 0 else -closing
        remaining, remaining_value = qty - closing, value_cents - closing_value
    if remaining:
        basis += remaining_value if signed > 0 else -remaining_value
        position_qty += remaining if signed > 0 else -remaining
    _refuse_fractional_short(position_qty=position_qty)
    if position.qty * position_qty < 0:
        # Never in one fill: closing orders hold what they close (_position_intent).
        raise Forbidden("insufficient qty available for order")
    return replace(position, qty=position_qty, cost_basis_cents=basis, exists=True), realized


def _order_locked(order_id: uuid.UUID) -> Order | None:
    """The order's row as it is now, locked until the transaction ends, if it is still open.

    What an order holds (reserved cash, unfilled shares) is released from this row, never from
    a copy read earlier: a fill committed in between changed it, and releasing the copy's figures
    would release twice. The caller holds the account's lock (taken first, docs/architecture.md).
    """
    return (
        Order.objects.select_for_update(no_key=True)
        .filter(pk=order_id, status__in=OPEN_ORDER_STATUSES)
        .only("reserved_cents", "qty", "filled_qty", "status")
        .first()
    )


def _order_close(
    *,
    order: Order,
    status: str,
    now: dt.datetime,
    replaced_by: uuid.UUID | None = None,
    cascade: bool = True,
    release_shares: bool = True,
    ended_at: dt.datetime | None = None,
) -> bool:
    """End an open order (canceled, expired, replaced) and give back what it held.

    With ``cascade``, what closes with it closes too (an entry's held legs, an exit order's
    sibling: ``_linked_close``). Shares an exit pair holds are given back by the last of the
    two to close; ``release_shares=False`` keeps them for a replacement leg that takes them over.
    ``ended_at``: the instant it ended, when that was before ``now`` (a game's end, closed late):
    its ``canceled_at`` (or other stamp) says when, while ``updated_at`` and the event's time are
    ``now``, so this state is never older than one already published (an open copy routed at a
    later open, say).
    """
    stamp_field = {
        OrderStatus.CANCELED: "canceled_at",
        OrderStatus.EXPIRED: "expired_at",
        OrderStatus.REPLACED: "replaced_at",
    }[OrderStatus(status)]
    _lock_account(order.account_id)
    row = _order_locked(order.pk)
    if row is None:
        return False
    ended = ended_at or now
    Order.objects.filter(pk=order.pk).update(
        status=status, reserved_cents=0, updated_at=now, **{stamp_field: ended}
    )
    if row.reserved_cents:
        Account.objects.filter(pk=order.account_id).update(
            reserved_cents=F("reserved_cents") - row.reserved_cents
        )
    if (
        order.position_intent in CLOSING_INTENTS
        and release_shares
        and row.status != OrderStatus.HELD  # a held leg holds nothing yet
        and not _active_linked_exists(order)
    ):
        Position.objects.filter(account_id=order.account_id, asset_id=order.asset_id).update(
            qty_held=F("qty_held") - (row.qty - row.filled_qty)
        )
    setattr(order, stamp_field, ended)
    order.status = status
    order.reserved_cents = 0
    order.qty, order.filled_qty = row.qty, row.filled_qty
    order.updated_at = now
    order_event_publish_on_commit(_event(str(status), order, now, replaced_by=replaced_by))
    if cascade:
        _linked_close(
            order=order,
            status=OrderStatus.CANCELED if status == OrderStatus.REPLACED else status,
            now=now,
            ended_at=ended_at,
        )
    return True


def _account_writes_refuse_locked(account_id: uuid.UUID | str, *, now: dt.datetime) -> None:
    """``account_writes_refuse`` under the account's lock (taken first, as every write takes it)."""
    player = _game_player(_account_with_game_locked(account_id))
    if player is not None:
        _game_writes_refuse(player, now=now)


def _owned_order(account_id: uuid.UUID | str, order_id: uuid.UUID | str) -> Order:
    try:
        return Order.objects.select_related("asset").get(pk=order_id, account_id=account_id)
    except (Order.DoesNotExist, ValueError, TypeError, ValidationError):
        raise NotFound("order not found") from None


def _expire_if_due(order: Order, now: dt.datetime) -> bool:
    """Expire a day order whose trading day has ended but which the periodic expiry has not
    reached yet (it runs every few seconds), so a cancel or replace in that gap sees it expired:
    a replacement would otherwise carry it into the next day."""
    if order.expires_at is None or order.expires_at > now:
        return False
    return _order_close(order=order, status=OrderStatus.EXPIRED, now=now)


def order_cancel(
    *, account_id: uuid.UUID | str, order_id: uuid.UUID | str, now: dt.datetime | None = None
) -> Order:
    now = now or timezone.now()
    with transaction.atomic():
        _account_writes_refuse_locked(account_id, now=now)
        order = _owned_order(account_id, order_id)
        canceled = not _expire_if_due(order, now) and _order_close(
            order=order, status=OrderStatus.CANCELED, now=now
        )
    # Raised after the commit, so an expiry found here is kept.
    if not canceled:
        order.refresh_from_db()
        raise NotCancelable(f"order is {order.status} and can no longer be canceled")
    return order


def order_cancel_all(*, account_id: uuid.UUID | str, now: dt.datetime | None = None) -> list[Order]:
    """Cancel every open order of an account; returns those canceled."""
    now = now or timezone.now()
    canceled = []
    with transaction.atomic():
        _account_writes_refuse_locked(account_id, now=now)
        for order in Order.objects.filter(
            account_id=account_id, status__in=OPEN_ORDER_STATUSES
        ).select_related("asset"):
            if _order_close(order=order, status=OrderStatus.CANCELED, now=now):
                canceled.append(order)
    return canceled


def order_replace(
    *,
    account_id: uuid.UUID | str,
    order_id: uuid.UUID | str,
    qty: int | None = None,
    time_in_force: str | None = None,
    limit_price_units: int | None = None,
    stop_price_units: int | None = None,
    trail_units: int | None = None,
    client_order_id: str | None = None,
    now: dt.datetime | None = None,
) -> Order:
    """Replace an open order with a new one carrying the changes; the old one becomes 'replaced'.

    ``qty`` is in quantity units. A notional order replaced with a qty becomes a qty order; one
    replaced without keeps its notional, sized again at its new limit.
    """
    now = now or timezone.now()
    with transaction.atomic():
        _account_writes_refuse_locked(account_id, now=now)
        old = _owned_order(account_id, order_id)
        if not _expire_if_due(old, now):
            return _replace_open(
                old,
                qty=qty,
                time_in_force=time_in_force,
                limit_price_units=limit_price_units,
                stop_price_units=stop_price_units,
                trail_units=trail_units,
                client_order_id=client_order_id,
                now=now,
            )
    # Raised after the commit, so the expiry is kept.
    raise NotCancelable("order expired at the end of its trading day and can no longer be replaced")


def _replace_open(
    old: Order,
    *,
    qty: int | None,
    time_in_force: str | None,
    limit_price_units: int | None,
    stop_price_units: int | None,
    trail_units: int | None,
    client_order_id: str | None,
    now: dt.datetime,
) -> Order:
    if not old.is_open:
        raise NotCancelable(f"order is {old.status} and can no longer be replaced")
    if old.type == OrderType.MARKET:
        raise InvalidRequest("market orders cannot be replaced")
    if limit_price_units is not None and old.type not in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        raise InvalidRequest("limit_price applies only to limit and stop_limit orders")
    if stop_price_units is not None and old.type not in (OrderType.STOP, OrderType.STOP_LIMIT):
        raise InvalidRequest("stop_price applies only to stop and stop_limit orders")
    if trail_units is not None and old.type != OrderType.TRAILING_STOP:
        raise InvalidRequest("trail applies only to trailing_stop orders")
    if old.order_class != OrderClass.SIMPLE:
        if old.parent_id is None and old.order_class != OrderClass.OCO:
            if Order.objects.filter(parent_id=old.pk, status__in=OPEN_ORDER_STATUSES).exists():
                raise InvalidRequest(
                    f"the entry of a {old.order_class} order cannot be replaced while its legs wait:"
                    " cancel it (its legs with it) and place it again"
                )
        else:
            return _exit_replace(
                old,
                qty=qty,
                time_in_force=time_in_force,
                limit_price_units=limit_price_units,
                stop_price_units=stop_price_units,
                client_order_id=client_order_id,
                now=now,
            )
    trail_price, trail_percent = old.trail_price_units, old.trail_percent_units
    if trail_units is not None:
        if trail_price is not None:
            trail_price = trail_units
        else:
            trail_percent = trail_units
    # The replacement's id is chosen now, so the "replaced" event names it (replaced_by).
    new_id = uuid.uuid4()
    if not _order_close(order=old, status=OrderStatus.REPLACED, now=now, replaced_by=new_id):
        raise NotCancelable("order is no longer open")
    # A partially filled order is replaced by one for what it had left (or the qty given).
    keeps_notional = qty is None and old.notional_cents is not None and not old.filled_qty
    request = OrderRequest(
        symbol=old.asset.symbol,
        qty=None if keeps_notional else (qty if qty is not None else old.qty - old.filled_qty),
        notional_cents=old.notional_cents if keeps_notional else None,
        side=old.side,
        type=old.type,
        time_in_force=time_in_force or old.time_in_force,
        limit_price_units=limit_price_units if limit_price_units is not None else old.limit_price_units,
        stop_price_units=stop_price_units if stop_price_units is not None else old.stop_price_units,
        trail_price_units=trail_price,
        trail_percent_units=trail_percent,
        client_order_id=client_order_id,
        extended_hours=old.extended_hours,
    )
    new = _order_place(account_id=old.account_id, request=request, now=now, order_id=new_id)
    Order.objects.filter(pk=new.pk).update(replaces=old)
    new.replaces = old
    return new


def _exit_replace(
    old: Order,
    *,
    qty: int | None,
    time_in_force: str | None,
    limit_price_units: int | None,
    stop_price_units: int | None,
    client_order_id: str | None,
    now: dt.datetime,
) -> Order:
    """Replace an exit order of an advanced order (a leg, or an oco's take-profit) with new
    prices: the replacement takes its place in the group, its status (a held leg stays held)
    and its hold of what the pair closes."""
    if qty is not None and qty != old.qty:
        raise InvalidRequest(f"the qty of a {old.order_class} order's leg cannot be changed")
    if time_in_force is not None and time_in_force != old.time_in_force:
        raise InvalidRequest(f"the time_in_force of a {old.order_class} order's leg cannot be changed")
    for name, units in (("limit_price", limit_price_units), ("stop_price", stop_price_units)):
        if units is not None and units <= 0:
            raise InvalidRequest(f"{name} must be positive")
        if units is not None and not price_increment_valid(units):
            raise InvalidRequest(
                f"invalid {name} {units_to_str(units)}. sub-penny increment does not fulfill minimum pricing criteria"
            )
    if client_order_id is not None and not 0 < len(client_order_id) <= 48:
        raise InvalidRequest("client_order_id must be 1 to 48 characters")
    _lock_account(old.account_id)
    row = _order_locked(old.pk)
    if row is None:
        raise NotCancelable("order is no longer open")
    if row.filled_qty:
        # The replacement would take the group's whole qty and hold while the leg holds only
        # what is left, so its fill or cancel would release shares held for other orders.
        raise InvalidRequest(
            f"a partially filled leg of a {old.order_class} order cannot be replaced: cancel it and place a new order for the rest"
        )
    status = row.status
    new_id = uuid.uuid4()
    _order_close(
        order=old,
        status=OrderStatus.REPLACED,
        now=now,
        replaced_by=new_id,
        cascade=False,
        release_shares=False,
    )
    new = Order(
        id=new_id,
        account_id=old.account_id,
        client_order_id=client_order_id or str(uuid.uuid4()),
        asset=old.asset,
        side=old.side,
        position_intent=old.position_intent,
        type=old.type,
        time_in_force=old.time_in_force,
        qty=old.qty,
        limit_price_units=limit_price_units if limit_price_units is not None else old.limit_price_units,
        stop_price_units=stop_price_units if stop_price_units is not None else old.stop_price_units,
        order_class=old.order_class,
        parent_id=old.parent_id,
        replaces=old,
        submitted_at=now,
        expires_at=old.expires_at,
        status=status,
    )
    try:
        with transaction.atomic():
            new.save(force_insert=True)
    except IntegrityError:
        raise InvalidRequest("client_order_id must be unique") from None
    if old.parent_id is None:
        # An oco's take-profit replaced: its stop-loss leg now belongs to the replacement.
        Order.objects.filter(parent_id=old.pk).update(parent=new)
    new.accepted_state = OrderState.of(new)
    if status != OrderStatus.HELD:
        order_event_publish_on_commit(
            _event("accepted" if status == OrderStatus.ACCEPTED else "new", new, now)
        )
    return new


def order_fill(
    *,
    order_id: uuid.UUID | str,
    price_units: int,
    qty: int | None = None,
    tick_seq: int | None = None,
    water_mark_units: int | None = None,
    now: dt.datetime | None = None,
) -> Order | None:
    """Fill a resting order that a price crossed (the market's tick pipeline calls this): at
    most ``qty`` quantity units of what is left (None: all of it); a trailing stop's
    ``water_mark_units`` is the mark it fired from, kept on the order.

    Returns None when the order is no longer open (a cancel won the race). When the account can
    no longer pay (its cash moved since the order rested), the order is canceled instead.
    """
    now = now or timezone.now()
    try:
        with transaction.atomic():
            order = (
                Order.objects.select_related("asset", "account__game_player__game")
                .filter(pk=order_id)
                .first()
            )
            if order is None or not order.is_open:
                return None
            player = _game_player(order.account)
            if player is not None and _game_over_for(player, now):
                # Its game ended (or its player left) before the periodic close reached it:
                # canceled as of the end, as that close would, and nothing fills after the end.
                closed = _order_close(
                    order=order,
                    status=OrderStatus.CANCELED,
                    now=now,
                    ended_at=min(now, _game_closed_at(player)),
                )
                return order if closed else None
            _execute_fill(
                order=order,
                account=order.account,
                price_units=price_units,
                qty=qty,
                tick_seq=tick_seq,
                resting=True,
                now=now,
                water_mark_units=water_mark_units,
            )
            return order
    except NotCancelable:
        return None
    except Forbidden:
        with transaction.atomic():
            order = Order.objects.select_related("asset").get(pk=order_id)
            _order_close(order=order, status=OrderStatus.CANCELED, now=now)
        return order


def order_auction_execute(
    *,
    order_id: uuid.UUID | str,
    price_units: int,
    tick_seq: int | None = None,
    now: dt.datetime | None = None,
) -> Order | None:
    """Execute an opg or cls order in its auction at the auction's price: a market order, or a
    limit the price satisfies, fills; any other is canceled, as Alpaca cancels what an auction
    does not fill. Returns None when the order was no longer open."""
    now = now or timezone.now()
    order = Order.objects.select_related("asset", "account__game_player__game").filter(pk=order_id).first()
    if order is None or not order.is_open:
        return None
    if order.type == OrderType.LIMIT:
        assert order.limit_price_units is not None
        limit = order.limit_price_units
        if not (price_units <= limit if order.side == OrderSide.BUY else price_units >= limit):
            player = _game_player(order.account)
            # An auction after its game's end: canceled as of the end, as the game's close would.
            ended_at = (
                min(now, _game_closed_at(player))
                if player is not None and _game_over_for(player, now)
                else None
            )
            with transaction.atomic():
                closed = _order_close(order=order, status=OrderStatus.CANCELED, now=now, ended_at=ended_at)
            return order if closed else None
    return order_fill(order_id=order.pk, price_units=price_units, tick_seq=tick_seq, now=now)


def orders_route_accepted(*, now: dt.datetime | None = None) -> list[Order]:
    """The session opened: every accepted order is routed, ``new`` from now on (with its event),
    and rests or executes as any new order. Returns them, oldest first. A game account's orders
    whose game is over (or player removed) are not routed but closed as of the end
    (``game_account_orders_close``): a ``new`` state published now would postdate their end."""
    now = now or timezone.now()
    routed = []
    accepted = (
        Order.objects.filter(status=OrderStatus.ACCEPTED)
        .select_related("asset", "account__game_player__game")
        .order_by("submitted_at", "id")
    )
    closed_accounts: set[uuid.UUID] = set()
    for order in accepted:
        if _game_over_for(_game_player(order.account), now):
            if order.account_id not in closed_accounts:
                closed_accounts.add(order.account_id)
                game_account_orders_close(account_id=order.account_id, now=now)
            continue
        with transaction.atomic():
            if not Order.objects.filter(pk=order.pk, status=OrderStatus.ACCEPTED).update(
                status=OrderStatus.NEW, updated_at=now
            ):
                continue  # canceled or replaced meanwhile
            order.status, order.updated_at = OrderStatus.NEW, now
            order_event_publish_on_commit(_event("new", order, now))
        routed.append(order)
    return routed


def order_mark_triggered(*, order_id: uuid.UUID | str, now: dt.datetime | None = None) -> None:
    """A stop_limit's stop was crossed: from now on it rests as a limit order."""
    Order.objects.filter(pk=order_id, status__in=OPEN_ORDER_STATUSES, stop_triggered_at__isnull=True).update(
        stop_triggered_at=now or timezone.now()
    )


def orders_track_water_marks(*, marks: Mapping[str, int]) -> int:
    """Record trailing stops' new water marks (order id -> mark), all in one UPDATE.

    The market calls this once per window with the marks that window moved, so a trailing stop
    costs at most one row write per window however many ticks moved it, and its stop price as
    orders show it (from the mark) is the one the market triggers at as of the last window.
    Closed orders keep their mark. Returns how many orders moved.
    """
    if not marks:
        return 0
    cases = [When(pk=uuid.UUID(order_id), then=Value(mark)) for order_id, mark in marks.items()]
    return Order.objects.filter(
        pk__in=[uuid.UUID(order_id) for order_id in marks],
        status__in=OPEN_ORDER_STATUSES,
        type=OrderType.TRAILING_STOP,
    ).update(high_water_mark_units=Case(*cases, output_field=BigIntegerField()))


def orders_expire(*, now: dt.datetime | None = None) -> int:
    """Expire day orders past their day boundary; returns how many expired.

    The game's end wins a tie: a game account's order whose day ends at or after the instant its
    account stopped trading (its game's end, or its player's removal) was open at that instant,
    so it is canceled as of that instant, as the game's close (``game_account_orders_close``)
    cancels it, not expired. Decided under the game's row lock, then the account's, re-reading
    the game: the order ``game_end`` and ``game_player_remove`` take them in, so the expiry
    waits for an end or a removal in progress (and sees it) instead of deciding on the game as
    it was, and the two never deadlock (docs/architecture.md, Games). The expiry and the game's
    close reach one outcome in either order, and give back what the order held once.

    An order whose account was deleted meanwhile is logged and passed over, and one whose player
    is gone (its game deleted) expires as any account's: the run goes on with the others."""
    now = now or timezone.now()
    due = list(
        Order.objects.filter(status__in=OPEN_ORDER_STATUSES, expires_at__lte=now).select_related(
            "asset", "account__game_player"
        )
    )
    for order in due:
        listed_player = _game_player(order.account)
        try:
            with transaction.atomic():
                if listed_player is not None:
                    # A player's game never changes: the listed one is the one to lock.
                    _lock_game(listed_player.game_id)
                    player = _game_player(_account_with_game_locked(order.account_id))
                    if player is None:
                        logger.info("orders_expire: order %s: its game player is gone, expiring it", order.pk)
                    else:
                        assert order.expires_at is not None
                        stopped = _game_closed_at(player)
                        if stopped <= order.expires_at:
                            _order_close(order=order, status=OrderStatus.CANCELED, now=now, ended_at=stopped)
                            continue
                _order_close(order=order, status=OrderStatus.EXPIRED, now=now)
        except NotFound:
            logger.warning(
                "orders_expire: order %s: its account %s is gone, skipped", order.pk, order.account_id
            )
    # Counted after: an entry's legs (due with it) expire with it, in its close.
    return Order.objects.filter(
        pk__in=[order.pk for order in due], status=OrderStatus.EXPIRED, expired_at=now
    ).count()


# --- Positions --------------------------------------------------------------------------------


def position_close(
    *,
    account_id: uuid.UUID | str,
    symbol: str,
    qty: int | None = None,
    percentage: Decimal | None = None,
    now: dt.datetime | None = None,
) -> Order:
    """Close all or part of a position with a market order on the opposite side.

    ``qty`` is in quantity units; a ``percentage`` of the position is taken to the unit (1/10^9
    share), not rounded to whole shares, except for a short, which closes in whole shares since
    no short position may be fractional.
    """
    account_id = _as_uuid(account_id, what="account")
    position = (
        Position.objects.select_related("asset")
        .filter(account_id=account_id, asset__symbol=symbol.upper())
        .exclude(qty=0)
        .first()
    )
    if position is None:
        raise NotFound("position does not exist")
    if qty is not None and percentage is not None:
        raise InvalidRequest("give qty or percentage, not both")
    size = abs(position.qty)
    if percentage is not None:
        if not 0 < percentage <= 100:
            raise InvalidRequest("percentage must be above 0 and at most 100")
        # Rounded down to the unit, so 100 % is the whole position and never more.
        qty = int(size * percentage / 100)
        if position.qty < 0:
            qty -= qty % QTY_SCALE
        if qty == 0:
            raise InvalidRequest(
                "percentage is less than one share"
                if position.qty < 0
                else "percentage is less than 0.000000001 share"
            )
    qty = size if qty is None else qty
    if not 0 < qty <= size:
        raise Forbidden(
            f"insufficient qty available for order (requested: {qty_to_str(qty)}, available: {qty_to_str(size)})"
        )
    request = OrderRequest(
        symbol=position.asset.symbol,
        qty=qty,
        side=OrderSide.SELL if position.qty > 0 else OrderSide.BUY,
        type=OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
    )
    return order_place(account_id=account_id, request=request, now=now)


# Forced covers are ordinary market orders (with their trade_updates events), named by this prefix.
MARGIN_CALL_CLIENT_ORDER_PREFIX = "margin_call-"


def account_margin_call(
    *, account_id: uuid.UUID | str, prices: dict[str, int] | None = None, now: dt.datetime | None = None
) -> list[Order]:
    """Buy back the account's shorts if its equity is below the maintenance requirement (30 % of
    the shorts' market value, trading/margin.py), as a broker's margin call liquidates.

    Under the account's lock, each tradable short is sized at the whole shares the buying power
    pays for at the ask, commission included, counting the cash the account's open orders hold.
    If at least one short can be covered, the account's open orders are canceled (their cash pays
    the covers; a buy to close is canceled only in a symbol being covered), then market buys to
    close cover them, client_order_id ``margin_call-...``, with their trade_updates events.
    A call that can cover nothing changes nothing (README, Short selling).
    Returns the covering orders (none when the account is not below maintenance).
    """
    now = now or timezone.now()
    account_id = _as_uuid(account_id, what="account")
    symbols = Position.objects.filter(account_id=account_id, qty__lt=0).values_list(
        "asset__symbol", flat=True
    )
    standing = selectors.margin_standings_get(symbols=list(symbols), prices=prices)
    if not any(item.account_id == account_id and item.below_maintenance for item in standing):
        return []
    covers = []
    with transaction.atomic():
        # Sized and placed under the lock: a cover of the user's own cannot move the position
        # in between, and the order's intent makes placement refuse rather than open a long.
        account = _account_with_game_locked(account_id)
        if _game_over_for(_game_player(account), now):
            return []  # an ended game's accounts are frozen as its standings are
        open_orders = list(
            Order.objects.filter(account_id=account_id, status__in=OPEN_ORDER_STATUSES).select_related(
                "asset"
            )
        )
        buying_power = account.buying_power_cents + sum(order.reserved_cents for order in open_orders)
        plans: list[tuple[Position, int]] = []
        shorts = Position.objects.filter(account_id=account_id, qty__lt=0).select_related("asset")
        for position in shorts.order_by("asset__symbol"):
            asset = position.asset
            if not (asset.active and asset.tradable) or asset.halted:
                continue  # no order could fill; the next window checks it again
            qty, cost = _margin_call_cover_qty(position=position, buying_power_cents=buying_power)
            if qty:
                plans.append((position, qty))
                buying_power -= cost
        if not plans:
            return []
        covered = {position.asset_id for position, _ in plans}
        for order in open_orders:
            if order.position_intent != PositionIntent.BUY_TO_CLOSE or order.asset_id in covered:
                _order_close(order=order, status=OrderStatus.CANCELED, now=now)
        for position, qty in plans:
            cover = _margin_call_cover(account_id=account_id, symbol=position.asset.symbol, qty=qty, now=now)
            if cover is not None:
                covers.append(cover)
    return covers


def _margin_call_cover(*, account_id: uuid.UUID, symbol: str, qty: int, now: dt.datetime) -> Order | None:
    """Place one cover; one share fewer if rounding left it short of buying power, else none."""
    for attempt in (qty, qty - QTY_SCALE):
        if attempt < QTY_SCALE:
            return None
        request = OrderRequest(
            symbol=symbol,
            qty=attempt,
            side=OrderSide.BUY,
            type=OrderType.MARKET,
            time_in_force=TimeInForce.DAY,
            client_order_id=f"{MARGIN_CALL_CLIENT_ORDER_PREFIX}{uuid.uuid4().hex[:20]}",
            position_intent=PositionIntent.BUY_TO_CLOSE,
        )
        try:
            return _order_place(account_id=account_id, request=request, now=now, margin_call=True)
        except Forbidden as error:
            if str(error) != "insufficient buying power":
                return None
    return None


def _margin_call_cover_qty(*, position: Position, buying_power_cents: int) -> tuple[int, int]:
    """The whole shares of the short that ``buying_power_cents`` pays to cover at the ask, and
    what they cost: their value and commission less the initial margin they give back (the
    cost basis shrinks as _position_apply_fill shrinks it)."""
    size = -position.qty
    ask_units = _quote_for(position.asset.symbol).ask
    hold = margin.short_hold_cents(qty=position.qty, cost_basis_cents=position.cost_basis_cents)

    def cost(shares: int) -> int:
        qty = shares * QTY_SCALE
        basis = position.cost_basis_cents - divide_half_even(position.cost_basis_cents * qty, size)
        released = hold - margin.short_hold_cents(qty=qty - size, cost_basis_cents=basis)
        return trade_value_cents(price_units=ask_units, qty=qty) + commission_cents(qty=qty) - released

    low, high = 0, size // QTY_SCALE
    if cost(high) <= buying_power_cents:
        return high * QTY_SCALE, cost(high)
    while low < high:  # the most shares whose cost fits: cost grows with the shares here
        middle = (low + high + 1) // 2
        if cost(middle) <= buying_power_cents:
            low = middle
        else:
            high = middle - 1
    return low * QTY_SCALE, cost(low) if low else 0


# --- Watchlists -------------------------------------------------------------------------------


def watchlist_create(*, account_id: uuid.UUID | str, name: str, symbols: list[str]) -> Watchlist:
    if not name or len(name) > 64:
        raise InvalidRequest("name must be 1 to 64 characters")
    assets = _assets_for(symbols)
    try:
        with transaction.atomic():
            watchlist = Watchlist.objects.create(account_id=account_id, name=name)
            _watchlist_set_assets(watchlist, assets)
    except IntegrityError:
        raise InvalidRequest("a watchlist with this name already exists") from None
    return watchlist


def watchlist_update(
    *, account_id: uuid.UUID | str, watchlist_id: uuid.UUID | str, name: str | None, symbols: list[str] | None
) -> Watchlist:
    watchlist = _owned_watchlist(account_id, watchlist_id)
    try:
        with transaction.atomic():
            if name is not None:
                if not name or len(name) > 64:
                    raise InvalidRequest("name must be 1 to 64 characters")
                watchlist.name = name
                watchlist.save(update_fields=["name", "updated_at"])
            if symbols is not None:
                _watchlist_set_assets(watchlist, _assets_for(symbols))
    except IntegrityError:
        raise InvalidRequest("a watchlist with this name already exists") from None
    return watchlist


def watchlist_add_asset(
    *, account_id: uuid.UUID | str, watchlist_id: uuid.UUID | str, symbol: str
) -> Watchlist:
    watchlist = _owned_watchlist(account_id, watchlist_id)
    (asset,) = _assets_for([symbol])
    with transaction.atomic():
        if WatchlistEntry.objects.filter(watchlist=watchlist, asset=asset).exists():
            raise InvalidRequest(f"{asset.symbol} is already in the watchlist")
        last = watchlist.entries.order_by("-position").values_list("position", flat=True).first()
        WatchlistEntry.objects.create(watchlist=watchlist, asset=asset, position=(last or 0) + 1)
        watchlist.save(update_fields=["updated_at"])
    return watchlist


def watchlist_remove_asset(
    *, account_id: uuid.UUID | str, watchlist_id: uuid.UUID | str, symbol: str
) -> Watchlist:
    watchlist = _owned_watchlist(account_id, watchlist_id)
    deleted, _ = WatchlistEntry.objects.filter(watchlist=watchlist, asset__symbol=symbol.upper()).delete()
    if not deleted:
        raise NotFound(f"{symbol.upper()} is not in the watchlist")
    watchlist.save(update_fields=["updated_at"])
    return watchlist


def watchlist_delete(*, account_id: uuid.UUID | str, watchlist_id: uuid.UUID | str) -> None:
    _owned_watchlist(account_id, watchlist_id).delete()


def _owned_watchlist(account_id: uuid.UUID | str, watchlist_id: uuid.UUID | str) -> Watchlist:
    try:
        return Watchlist.objects.get(pk=watchlist_id, account_id=account_id)
    except (Watchlist.DoesNotExist, ValueError, TypeError, ValidationError):
        raise NotFound("watchlist not found") from None


def _assets_for(symbols: list[str]) -> list[Asset]:
    wanted = [symbol.upper() for symbol in symbols]
    found = {asset.symbol: asset for asset in Asset.objects.filter(symbol__in=wanted)}
    unknown = [symbol for symbol in wanted if symbol not in found]
    if unknown:
        raise InvalidRequest(f"unknown symbols: {', '.join(unknown)}")
    return [found[symbol] for symbol in dict.fromkeys(wanted)]


def _watchlist_set_assets(watchlist: Watchlist, assets: list[Asset]) -> None:
    WatchlistEntry.objects.filter(watchlist=watchlist).delete()
    WatchlistEntry.objects.bulk_create(
        WatchlistEntry(watchlist=watchlist, asset=asset, position=index) for index, asset in enumerate(assets)
    )


# --- Sign-up ----------------------------------------------------------------------------------

SIGNUP_OPEN, SIGNUP_INVITE, SIGNUP_CLOSED = "open", "invite", "closed"


USERNAME_LOOKALIKE_MESSAGE = "A user with a name that looks the same already exists."


def username_skeleton_store(*, user: User) -> None:
    """Keep the user's skeleton (``UsernameSkeleton``) current after its username was written.

    Names that look like another user's are refused before they are saved (trading/signals.py,
    ``user_signup``, the admin's forms); a race between two such saves ends in an IntegrityError
    here, inside the saving transaction. The one user that may save a name whose skeleton another
    holds is one whose name already collided before skeletons existed: it keeps none.
    """
    skeleton = username_skeleton(user.username)
    holder = UsernameSkeleton.objects.filter(skeleton=skeleton).values_list("user_id", flat=True).first()
    if holder is None:
        UsernameSkeleton.objects.update_or_create(user=user, defaults={"skeleton": skeleton})


def user_signup(*, username: str, password: str, email: str = "", invite_code: str = "") -> User:
    """A new user and their trading account, together or not at all, as ``SIGNUP_MODE`` allows.

    Invalid input raises ValidationError keyed by field (username, email, password,
    invite_code), so a form shows each message beside its field; a closed sign-up is Forbidden.
    """
    mode = settings.SIGNUP_MODE
    if mode == SIGNUP_CLOSED:
        raise Forbidden("sign-up is closed")
    if mode == SIGNUP_INVITE and not _invite_code_matches(invite_code):
        raise ValidationError({"invite_code": "This invite code is not valid."})
    user = User(username=username.strip(), email=email.strip())
    errors: dict[str, list[str]] = {}
    try:
        # Username rules and uniqueness, e-mail format; the password is checked separately below.
        user.full_clean(exclude=["password"])
    except ValidationError as error:
        errors.update(error.message_dict)
    try:
        password_validation.validate_password(password, user=user)
    except ValidationError as error:
        errors["password"] = list(error.messages)
    if "username" not in errors and selectors.username_lookalike_exists(username=user.username):
        errors["username"] = [USERNAME_LOOKALIKE_MESSAGE]
    if errors:
        raise ValidationError(errors)
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
            account_open(user=user)
    except IntegrityError:
        # Another sign-up took the name between the check above and this insert.
        raise ValidationError({"username": "A user with that username already exists."}) from None
    return user


def _invite_code_matches(offered: str) -> bool:
    expected = settings.SIGNUP_INVITE_CODE
    return bool(expected) and hmac.compare_digest(offered.strip().encode(), expected.encode())
