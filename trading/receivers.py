"""Signal receivers that close open stream sockets when the credentials they showed end.

Logging out (Django's ``user_logged_out``), changing or resetting a password, deactivating or
deleting a user and deleting an API key all happen in Django's own views, forms and admin, not in
a service of ours, so they are caught here and announced through the events module after commit
(``trading.events.stream_credentials_revoke_on_commit``); revoking a key goes through
``services.api_key_revoke``, which announces it itself. A change made with a queryset
``update()`` sends no signal, so it closes no socket.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model, user_logged_out
from django.db.models.signals import post_delete, post_save, pre_save
from django.http import HttpRequest

from trading.events import (
    stream_credentials_revoke_on_commit,
    stream_key_credential,
    stream_session_credential,
    stream_sessions_credential,
    stream_user_credential,
)
from trading.models import ApiKey

# What a user row held before a save that may change it: (password hash, is_active).
_BEFORE = "_stream_credentials_before"
_WATCHED_FIELDS = frozenset({"password", "is_active"})


def _user_before_save(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if instance.pk is None or (update_fields is not None and not _WATCHED_FIELDS & set(update_fields)):
        return  # a new user, or a save of other fields (a login's last_login)
    stored = sender._default_manager.filter(pk=instance.pk).values_list("password", "is_active").first()
    setattr(instance, _BEFORE, stored)


def _user_after_save(sender: Any, instance: Any, created: bool = False, **kwargs: Any) -> None:
    before = instance.__dict__.pop(_BEFORE, None)
    if created or before is None:
        return
    password, was_active = before
    if was_active and not instance.is_active:
        stream_credentials_revoke_on_commit(stream_user_credential(instance.pk))
    elif password != instance.password:
        # Django ends the user's other sessions on a password change (their session hash no
        # longer matches); the browser that changed it reconnects with its new session.
        stream_credentials_revoke_on_commit(stream_sessions_credential(instance.pk))


def _user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    stream_credentials_revoke_on_commit(stream_user_credential(instance.pk))


def _key_deleted(sender: Any, instance: ApiKey, **kwargs: Any) -> None:
    stream_credentials_revoke_on_commit(stream_key_credential(instance.key_id))


def _logged_out(sender: Any, request: HttpRequest | None = None, user: Any = None, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    session_key = getattr(session, "session_key", None)
    if user is not None and session_key:
        stream_credentials_revoke_on_commit(stream_session_credential(session_key))


def connect() -> None:
    """Connect the receivers (the trading app's ``ready``)."""
    user_model = get_user_model()
    pre_save.connect(_user_before_save, sender=user_model, dispatch_uid="trading.streams.user_before_save")
    post_save.connect(_user_after_save, sender=user_model, dispatch_uid="trading.streams.user_after_save")
    post_delete.connect(_user_deleted, sender=user_model, dispatch_uid="trading.streams.user_deleted")
    post_delete.connect(_key_deleted, sender=ApiKey, dispatch_uid="trading.streams.key_deleted")
    user_logged_out.connect(_logged_out, dispatch_uid="trading.streams.logged_out")
