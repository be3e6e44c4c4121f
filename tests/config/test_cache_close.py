"""Django's per-request ``close_caches`` is taken off ``request_finished`` only while it provably
does nothing (config/cache.py, ``django_cache_close_receiver_sync``), decided again when settings change."""

from __future__ import annotations

import copy
import weakref
from typing import Any

from django.conf import settings
from django.core.cache import caches, close_caches
from django.core.signals import request_finished
from django.test import Client, override_settings

from config.cache import django_cache_close_is_noop


def _is_connected() -> bool:
    def live(receiver: Any) -> Any:
        return receiver() if isinstance(receiver, weakref.ReferenceType) else receiver

    return any(live(receiver) is close_caches for _, receiver, *_ in request_finished.receivers)


def test_close_caches_is_off_request_finished_for_the_configured_cache() -> None:
    assert django_cache_close_is_noop(
        caches=settings.CACHES,
        close_connection_default=getattr(settings, "DJANGO_REDIS_CLOSE_CONNECTION", False),
    )
    assert not _is_connected()


def test_closing_the_configured_cache_keeps_its_connections(db: Any) -> None:
    """What makes dropping the receiver safe: django-redis' close() with this configuration leaves
    the pooled connections open (and so a request's end has nothing to release)."""
    cache = caches["default"]
    cache.set("close-probe", 1, 5)
    assert cache.get("close-probe") == 1
    pool = cache.client.get_client().connection_pool  # type: ignore[attr-defined]
    open_before = [connection for connection in pool._connections if connection._sock is not None]
    assert open_before
    cache.close()
    assert all(connection._sock is not None for connection in open_before)
    Client().get("/v2/_bench/ping")  # a whole request, request_finished included
    assert all(connection._sock is not None for connection in open_before)
    cache.delete("close-probe")


def test_any_other_cache_configuration_keeps_close_caches() -> None:
    def changed(**options: Any) -> dict[str, dict[str, Any]]:
        configured = copy.deepcopy(settings.CACHES)
        configured["default"]["OPTIONS"].update(options)
        return configured

    locmem = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    second = {
        **copy.deepcopy(settings.CACHES),
        "pages": {"BACKEND": "django.core.cache.backends.db.DatabaseCache"},
    }
    assert not django_cache_close_is_noop(
        caches=changed(CLOSE_CONNECTION=True), close_connection_default=False
    )
    assert not django_cache_close_is_noop(caches=changed(), close_connection_default=True)
    assert not django_cache_close_is_noop(
        caches=changed(CLIENT_CLASS="django_redis.client.ShardClient"), close_connection_default=False
    )
    assert not django_cache_close_is_noop(caches=locmem, close_connection_default=False)
    assert not django_cache_close_is_noop(caches=second, close_connection_default=False)


def test_overriding_the_settings_decides_again_both_ways() -> None:
    """A test's ``override_settings`` to a cache whose close matters puts ``close_caches`` back on
    ``request_finished`` for as long as it lasts; one back to a no-op close takes it off again."""
    locmem = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    closing = copy.deepcopy(settings.CACHES)
    closing["default"]["OPTIONS"]["CLOSE_CONNECTION"] = True
    not_closing = copy.deepcopy(settings.CACHES)
    not_closing["default"]["OPTIONS"]["CLOSE_CONNECTION"] = False
    assert not _is_connected()
    with override_settings(CACHES=locmem):
        assert _is_connected()
    assert not _is_connected()
    with override_settings(CACHES=closing):
        assert _is_connected()
    assert not _is_connected()
    with override_settings(DJANGO_REDIS_CLOSE_CONNECTION=True):
        assert _is_connected()
        with override_settings(CACHES=not_closing):  # the alias's own flag wins over the default
            assert not _is_connected()
        assert _is_connected()
    assert not _is_connected()
