"""A key-authenticated request's user is its owner's row as stored: every field the process keeps
(trading/api/authentication.py, OWNER_FIELDS) in its own attribute. ``Model.from_db`` assigns a
partial row's values in the model's field order, so names listed in another order shifted them:
the username landed in ``is_superuser`` and ``is_active`` read False."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from trading import services
from trading.api.authentication import OWNER_FIELDS, APIKeyAuthentication
from trading.models import Account

pytestmark = pytest.mark.django_db


def test_a_keys_user_has_its_owners_fields(make_account: Callable[..., Account]) -> None:
    account = make_account(username="ada")
    account.user.first_name, account.user.email = "Ada", "ada@example.com"
    account.user.save()
    key, secret = services.api_key_create(account_id=account.pk, label="test")
    factory = APIRequestFactory()
    for _ in range(2):  # verified, then from the process's cache
        request = Request(
            factory.get("/v2/account", HTTP_APCA_API_KEY_ID=key.key_id, HTTP_APCA_API_SECRET_KEY=secret)
        )
        result = APIKeyAuthentication().authenticate(request)
        assert result is not None
        user = result[0]
        assert isinstance(user, User)
        assert (user.pk, user.username, user.first_name, user.email) == (
            account.user.pk,
            "ada",
            "Ada",
            "ada@example.com",
        )
        assert (user.is_active, user.is_staff, user.is_superuser) == (True, False, False)
        # Built as the ORM builds a row loaded with only() those fields: the rest deferred.
        assert user.get_deferred_fields() == {
            field.attname for field in User._meta.concrete_fields if field.attname not in OWNER_FIELDS
        }
        assert (user._state.adding, user._state.db) == (False, "default")
