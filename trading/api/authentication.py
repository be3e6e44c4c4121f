"""API-key authentication in the three forms alpaca-py sends.

- ``APCA-API-KEY-ID`` and ``APCA-API-SECRET-KEY`` headers (the default);
- ``Authorization: Basic base64(key:secret)`` (``use_basic_auth=True``);
- ``Authorization: Bearer <key>:<secret>``: alpaca-py sends its OAuth token verbatim, and there
  are no OAuth apps here, so a token is accepted only when it is a key pair.

A verified key is cached for API_KEY_CACHE_SECONDS so most requests skip the key lookup; the
cache holds the secret's HMAC, never the secret, and ``services.api_key_revoke`` replaces the entry
with a revocation marker.

In front of that, each process keeps the key's owner (the user's row, not the account's) in its
L1 for at most CACHE_L1_MAX_SECONDS (config.cache), so a request whose view needs no account row
(the cached leaderboard, analytics and stats reads) authenticates without Redis or the database.
The request acts on the key's account (``request_account_or_none``), loaded when first asked for.
Revocation drops the entry in every process (the cache's invalidation channel); a user
deactivated, or a message lost, takes effect within the L1 bound, the one every cached mutable
value keeps (docs/architecture.md, Caching).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, DatabaseError
from django.db.models import DEFERRED
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from config.cache import LOCAL_DATA_TYPE, cache_manager
from trading import selectors, services
from trading.errors import NotFound
from trading.models import Account, ApiKey
from trading.prepared import JoinedPart, PreparedQuery

logger = logging.getLogger(__name__)

KEY_HEADER = "HTTP_APCA_API_KEY_ID"
SECRET_HEADER = "HTTP_APCA_API_SECRET_KEY"
INVALID_CREDENTIALS = "access key verification failed : access key not found (Code = 40110000)"


@dataclass(frozen=True)
class VerifiedKey:
    key_id: str
    secret_hmac: str
    account_id: str
    user_id: int

    def as_cache_value(self) -> dict[str, Any]:
        return {
            "secret_hmac": self.secret_hmac,
            "account_id": self.account_id,
            "user_id": self.user_id,
        }


def _credentials(request: Request) -> tuple[str, str] | None:
    """The (key id, secret) pair a request carries, None if it carries no API credentials."""
    return credentials_from(request.META)


def credentials_from(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    """``_credentials`` of a request's WSGI environ (or Django's ``META``, the same names)."""
    key_id, secret = meta.get(KEY_HEADER), meta.get(SECRET_HEADER)
    if key_id is not None or secret is not None:
        if not key_id or not secret:
            raise exceptions.AuthenticationFailed("both APCA-API-KEY-ID and APCA-API-SECRET-KEY are required")
        return key_id.strip(), secret.strip()
    scheme, _, value = meta.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise exceptions.AuthenticationFailed("malformed Basic credentials") from None
        return _split_pair(decoded)
    if scheme == "bearer":
        return _split_pair(value)
    return None


def _split_pair(pair: str) -> tuple[str, str]:
    key_id, sep, secret = pair.partition(":")
    if not (sep and key_id and secret):
        raise exceptions.AuthenticationFailed(INVALID_CREDENTIALS)
    return key_id, secret


def verified_key(key_id: str, secret: str) -> VerifiedKey:
    """The key a (key id, secret) pair names; AuthenticationFailed when it names none (also for streams)."""
    offered = services.api_key_secret_hmac(secret)
    cache_key = services.api_key_cache_key(key_id)
    cached = cache.get(cache_key)
    if cached == services.API_KEY_REVOKED:
        raise exceptions.AuthenticationFailed(INVALID_CREDENTIALS)
    if isinstance(cached, dict):
        known = VerifiedKey(key_id=key_id, **cached)
    else:
        row = (
            ApiKey.objects.filter(key_id=key_id, revoked_at__isnull=True)
            .values_list("secret_hmac", "account_id", "account__user_id")
            .first()
        )
        if row is None:
            raise exceptions.AuthenticationFailed(INVALID_CREDENTIALS)
        known = VerifiedKey(key_id=key_id, secret_hmac=row[0], account_id=str(row[1]), user_id=row[2])
    # Compared even on a cache hit: the cache says which key exists, not that this secret is it.
    if not hmac.compare_digest(offered, known.secret_hmac):
        raise exceptions.AuthenticationFailed(INVALID_CREDENTIALS)
    if not isinstance(cached, dict):
        # add, not set: a revocation that committed after the read above left a marker that
        # this request must not overwrite with the stale "valid" answer.
        cache.add(cache_key, known.as_cache_value(), settings.API_KEY_CACHE_SECONDS)
        # Once per cache period, not per request: a write on every GET would serialise readers
        # behind SQLite's write lock.
        ApiKey.objects.filter(key_id=key_id).update(last_used_at=timezone.now())
    return known


# What a request's user needs without another query: the throttle's identity (pk, date_joined),
# the permission checks (is_active, is_staff, is_superuser) and names. Any other field (the
# password hash is deliberately not kept) loads on first access like a deferred one. In the
# model's field order: ``Model.from_db`` given some of the fields assigns the values in that order
# whatever order the names are listed in (listed otherwise, a key's user had its username in
# ``is_superuser`` and its first name as username).
OWNER_FIELDS = tuple(
    field.attname
    for field in get_user_model()._meta.concrete_fields
    if field.attname
    in {
        "id",
        "username",
        "first_name",
        "last_name",
        "email",
        "is_active",
        "is_staff",
        "is_superuser",
        "date_joined",
    }
)


@dataclass(frozen=True)
class KeyOwner:
    """A verified key and its owner's row, as the process-local cache keeps them (immutable:
    every request builds its own user instance from them)."""

    key: VerifiedKey
    # One value per concrete field of ``user_model``, DEFERRED for those not in OWNER_FIELDS: the
    # form ``Model.from_db`` hands straight to the constructor (Django's documented convention
    # for deferred fields), where a shorter list is first spread over the fields on every call.
    user_values: tuple[Any, ...]
    user_model: type[AbstractBaseUser]

    def user(self) -> AbstractBaseUser:
        return self.user_model.from_db(DEFAULT_DB_ALIAS, _OWNER_FIELD_NAMES, self.user_values)


_OWNER_FIELD_NAMES = list(OWNER_FIELDS)


def _key_owner(key_id: str, secret: str) -> KeyOwner:
    known = verified_key(key_id, secret)
    # The owner of the key's account, if still active. A slice, not .first(): the pk filter names
    # one row, and .first()'s ORDER BY costs ~130 us of query compilation.
    values = next(
        iter(
            get_user_model()
            .objects.filter(pk=known.user_id, accounts__pk=known.account_id, is_active=True)
            .values_list(*OWNER_FIELDS)[:1]
        ),
        None,
    )
    if values is None:
        raise exceptions.AuthenticationFailed(INVALID_CREDENTIALS)
    model = get_user_model()
    loaded = dict(zip(OWNER_FIELDS, values, strict=True))
    return KeyOwner(
        key=known,
        user_values=tuple(loaded.get(field.attname, DEFERRED) for field in model._meta.concrete_fields),
        user_model=model,
    )


def key_owner_held(key_id: str, secret: str) -> KeyOwner | None:
    """The owner of the key this pair names when this process's L1 holds it and ``secret`` is
    the key's, else None (counting nothing; its L1 hit counts as ``LOCAL_DATA_TYPE``): what
    ``APIKeyAuthentication.authenticate`` finds on an L1 hit, for the cached reads' fast path
    (analytics/fast_reads.py). On None the request goes to the view, whose authentication looks
    the key up and answers a bad pair's 401 as always."""
    owner = cache_manager().local_get(services.api_key_cache_key(key_id))
    if not isinstance(owner, KeyOwner) or not _secret_matches(owner, secret):
        return None
    return owner


def _secret_matches(owner: KeyOwner, secret: str) -> bool:
    # Compared on every request: the cache says which key exists, not that this secret is it.
    return hmac.compare_digest(services.api_key_secret_hmac(secret), owner.key.secret_hmac)


class APIKeyAuthentication(BaseAuthentication):
    """Alpaca-style key pairs; the user is the account's owner and ``request.auth`` the key, whose
    account the request acts on (``request_account_or_none``)."""

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, VerifiedKey] | None:
        credentials = _credentials(request)
        if credentials is None:
            return None
        key_id, secret = credentials
        # The L1 hit is key_owner_held itself, so the fast path (analytics/fast_reads.py) admits
        # exactly the requests this admits from L1: a check added there applies to both.
        owner = key_owner_held(key_id, secret)
        if owner is not None:
            cache_manager().local_hits_count(LOCAL_DATA_TYPE)
            return owner.user(), owner.key
        # Not held, or held with another secret (cached_locally then counts the hit and the
        # comparison below refuses it; it also covers an entry another thread just added).
        owner = cache_manager().cached_locally(
            services.api_key_cache_key(key_id), lambda: _key_owner(key_id, secret)
        )
        if not _secret_matches(owner, secret):
            raise exceptions.AuthenticationFailed(INVALID_CREDENTIALS)
        return owner.user(), owner.key

    def authenticate_header(self, request: Request) -> str:
        # Any value here makes DRF answer unauthenticated requests 401 instead of 403.
        return 'APCA-API-KEY-ID realm="api"'


# Where a request keeps the account it acts on once loaded: the rate limiter and the view both ask.
_ACCOUNT_ATTR = "trading_account"


def request_account_or_none(request: Request) -> Account | None:
    """Loads the account a request acts on and, once its game is over, closes its open orders.

    The account: its API key's, or for a browser session the account the session selected (its
    user's default one until it selects another); None for a user without a trading account. A
    user's other accounts are never reached through a key of one of them."""
    http_request = request._request
    if hasattr(http_request, _ACCOUNT_ATTR):
        return cast(Account | None, getattr(http_request, _ACCOUNT_ATTR))
    account = _request_account_load(request)
    if account is not None:
        account = _account_settle(request, account)
    setattr(http_request, _ACCOUNT_ATTR, account)
    return account


def _account_settle(request: Request, account: Account) -> Account | None:
    """The account as a read is to see it: ``account`` itself, or reloaded after its finished
    game's open orders were closed.

    A game account whose game is over has its orders closed as of the end before anything
    reads it (orders, reservations, shares held), not when the periodic job comes; no query
    while its game runs, since the game came with the account. Reloaded whenever open orders
    were found, whoever closed them (a racing job changes the reservations as well)."""
    if account_orders_closed_on_read(account=account):
        return _request_account_load(request)
    return account


def account_orders_closed_on_read(*, account: Account) -> bool:
    """Whether reading ``account`` just closed its finished game's open orders (``_account_settle``:
    the read is then to see the account reloaded)."""
    try:
        return services.game_account_orders_close_on_read(account=account)
    except (DatabaseError, NotFound):
        # A busy database or an account gone under the close must not turn a read (or the
        # rate limiter, which asks first) into a 500/404: nothing fills after the end anyway,
        # and the next read or the periodic job closes them.
        logger.warning("closing a finished game's orders on read failed", exc_info=True)
        return False


def request_account_joined(
    request: Request, *, part: Callable[[str], JoinedPart | None]
) -> tuple[Account, list[tuple[Any, ...]]] | None:
    """The account a key's request acts on and ``part(account id)``'s rows, read in one
    statement with it (``PreparedQuery.run_joined``), the account kept on the request as
    ``request_account_or_none`` keeps it. None when the caller is to read the account
    (``request_account_or_none``) and then its rows alone: a session's request, an account
    already loaded, a part that is not joined, no account (403 there), or a finished game's
    account whose open orders were just closed (its rows read before the close are stale)."""
    http_request = request._request
    if hasattr(http_request, _ACCOUNT_ATTR) or not settings.PREPARED_QUERIES:
        return None
    keyed = _request_key_owner(request)
    if keyed is None:
        return None
    key, user_id = keyed
    joined_part = part(key.account_id)
    if joined_part is None:
        return None
    found = key_account_joined(account_id=key.account_id, user_id=user_id, part=joined_part)
    if found is None:
        setattr(http_request, _ACCOUNT_ATTR, None)
        return None
    account, rows = found
    settled = _account_settle(request, account)
    setattr(http_request, _ACCOUNT_ATTR, settled)
    return (account, rows) if settled is account else None


# A key's account with its game, compiled once (trading/prepared.py): every request acting on an
# account loads it. A slice, not .first(): the pk names one row.
_KEY_ACCOUNT = PreparedQuery(
    lambda pk, user_id: Account.objects.select_related("game_player__game").filter(pk=pk, user_id=user_id)[
        :1
    ],
    pk=Account._meta.get_field("id"),
    user_id=Account._meta.get_field("user").target_field,
)


def key_account_joined(
    *, account_id: str, user_id: Any, part: JoinedPart
) -> tuple[Account, list[tuple[Any, ...]]] | None:
    """A key's account (``_KEY_ACCOUNT``: its id and its user's) with ``part``'s rows, in one
    statement; None when no such account exists. Not settled (``account_orders_closed_on_read``)."""
    return _KEY_ACCOUNT.run_joined(part=part, pk=account_id, user_id=user_id)


def account_joined_again(
    *, account: Account, part: JoinedPart
) -> tuple[Account, list[tuple[Any, ...]]] | None:
    """``account``'s row read again (with its game, as ``_KEY_ACCOUNT`` reads a key's) with
    ``part``'s rows, in one statement: one moment for both, for a session's read of an account
    loaded (and settled) before it; None when the row is gone meanwhile."""
    return _KEY_ACCOUNT.run_joined(part=part, pk=str(account.pk), user_id=account.user_id)


def account_again(*, account: Account) -> Account | None:
    """``account``'s row read again, as ``account_joined_again`` reads it, without a part."""
    found = _KEY_ACCOUNT.run(pk=str(account.pk), user_id=account.user_id)
    return found[0] if found else None


def _request_key_owner(request: Request) -> tuple[VerifiedKey, Any] | None:
    """The key a request authenticated with and its user's id, whose account (``_KEY_ACCOUNT``)
    the request acts on; None for a session's or an anonymous request."""
    user_id = getattr(request.user, "pk", None)  # None when anonymous
    if user_id is None or not isinstance(request.auth, VerifiedKey):
        return None
    return request.auth, user_id


def _request_account_load(request: Request) -> Account | None:
    keyed = _request_key_owner(request)
    if keyed is not None:
        key, user_id = keyed
        # With its game, if any, in the same query: the account's answer says whether it may trade.
        found = _KEY_ACCOUNT.run(pk=key.account_id, user_id=user_id)
        return found[0] if found else None
    user_id = getattr(request.user, "pk", None)  # None when anonymous
    if user_id is not None:
        return selectors.account_for_session_get(user_id=user_id, session=request._request.session)
    return None


def request_account_id(request: Request) -> str | None:
    """The id of the account a request acts on, without a query for a key's (the rate limiter
    asks before any view, and cached reads need no account row)."""
    if isinstance(request.auth, VerifiedKey):
        return request.auth.account_id
    account = request_account_or_none(request)
    return None if account is None else str(account.pk)
