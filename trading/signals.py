"""Keeps every user's ``UsernameSkeleton`` in step with its username, whichever code saves it.

Users are created and renamed by sign-up, the admin's forms, ``createsuperuser``, ``seed_demo``
and the benchmarks, not only through trading/services.py; a skeleton that only some of those
wrote would let a look-alike of, say, the ``admin`` created by ``createsuperuser`` sign up. So
the model's own save hooks refuse a name that looks like another user's before the row is
written, and store the skeleton after. Saves that do not write the username (the login's
``last_login`` update) cost nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from trading import selectors, services


def _writes_username(update_fields: Iterable[str] | None) -> bool:
    return update_fields is None or "username" in update_fields


@receiver(pre_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="trading.username_lookalike_refused")
def username_lookalike_refused(
    sender: type[User],
    instance: User,
    raw: bool,
    update_fields: Iterable[str] | None,
    **kwargs: Any,
) -> None:
    if raw or not _writes_username(update_fields):
        return
    username = instance.username
    if not selectors.username_lookalike_exists(username=username, exclude_user_id=instance.pk):
        return
    # A name that collided before skeletons existed may be saved again unchanged (its owner
    # changing a password, say); only taking such a name is refused.
    unchanged = (
        instance.pk is not None and sender._default_manager.filter(pk=instance.pk, username=username).exists()
    )
    if not unchanged:
        raise ValidationError({"username": services.USERNAME_LOOKALIKE_MESSAGE})


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="trading.username_skeleton_kept")
def username_skeleton_kept(
    sender: type[User],
    instance: User,
    raw: bool,
    update_fields: Iterable[str] | None,
    **kwargs: Any,
) -> None:
    if raw or not _writes_username(update_fields):
        return
    services.username_skeleton_store(user=instance)
