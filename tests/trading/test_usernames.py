"""Usernames that only look different (case, compatibility forms, confusable letters) are one name:
refused at sign-up, in the admin and by any other save; the migration that brought skeletons in
keeps every existing user able to log in."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone
from hypothesis import assume, given, strategies as st

from trading import services
from trading.models import Account, UsernameSkeleton
from trading.usernames import username_skeleton

MakeAccount = Callable[..., Account]
STRONG_PASSWORD = "correct-horse-battery-9"

CYRILLIC_IE = "\u0435"  # looks like Latin e
CYRILLIC_A = "\u0430"  # looks like Latin a
GREEK_OMICRON = "\u03bf"  # looks like Latin o
FULLWIDTH_B = "\uff42"
MATH_BOLD_B = "\U0001d41b"

LOOKALIKES = [
    ("steve", f"st{CYRILLIC_IE}v{CYRILLIC_IE}"),
    ("alice", f"{CYRILLIC_A}lice"),
    ("bob", "Bob"),
    ("bob", "BOB"),
    ("bob", f"{FULLWIDTH_B}ob"),
    ("bob", f"{MATH_BOLD_B}{GREEK_OMICRON}b"),
    ("paypal", "paypa1"),
    ("foo", "f00"),
    ("strasse", "STRASSE"),
]
DISTINCT = [
    ("anna", "ana"),
    ("bob", "rob"),
    ("trader1", "trader2"),
    ("rusty", "tzzzz"),
    ("mom", "rnorn"),  # multi-character look-alikes are left out (see trading/usernames.py)
    ("rené", "rene"),
]


# --- The skeleton ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("first", "second"), LOOKALIKES)
def test_lookalike_names_share_a_skeleton(first: str, second: str) -> None:
    assert username_skeleton(first) == username_skeleton(second)


@pytest.mark.parametrize(("first", "second"), DISTINCT)
def test_different_names_keep_different_skeletons(first: str, second: str) -> None:
    assert username_skeleton(first) != username_skeleton(second)


@given(st.text(alphabet=st.characters(categories=["Ll", "Lu", "Nd"]), max_size=12))
def test_property_case_never_makes_a_name_different(name: str) -> None:
    assume(name.upper().casefold() == name.casefold())
    assert username_skeleton(name.upper()) == username_skeleton(name)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12))
def test_property_plain_lowercase_names_differ_only_by_the_digit_look_alikes(name: str) -> None:
    """Among ASCII names only 0/o and 1/l meet: the skeleton does not merge ordinary letters."""
    assert username_skeleton(name) == name.replace("0", "o").replace("1", "l")


# --- Sign-up, the admin and any other save --------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("taken", "wanted"), LOOKALIKES[:6])
def test_sign_up_refuses_a_name_that_looks_taken(
    client: Client, make_account: MakeAccount, taken: str, wanted: str
) -> None:
    make_account(username=taken)
    response = client.post(
        "/signup",
        {"username": wanted, "password": STRONG_PASSWORD, "password_confirm": STRONG_PASSWORD},
    )
    assert response.status_code == 200
    # (Django's form folds compatibility forms itself, and then finds the very same name.)
    message = " ".join(response.context["form"].errors["username"])
    assert "looks the same" in message or "already exists" in message
    assert get_user_model().objects.count() == 1 and Account.objects.count() == 1


@pytest.mark.django_db
def test_sign_up_service_refuses_and_accepts_by_skeleton(make_account: MakeAccount) -> None:
    make_account(username="steve")
    with pytest.raises(ValidationError) as refused:
        services.user_signup(username=f"St{CYRILLIC_IE}ve", password=STRONG_PASSWORD)
    assert "looks the same" in str(refused.value.message_dict["username"])
    user = services.user_signup(username="steven", password=STRONG_PASSWORD)
    assert UsernameSkeleton.objects.get(user=user).skeleton == "steven"


@pytest.mark.django_db
def test_every_way_of_creating_a_user_keeps_skeletons_unique(make_account: MakeAccount) -> None:
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", None)
    assert UsernameSkeleton.objects.get(user=admin).skeleton == "admin"
    with pytest.raises(ValidationError):
        get_user_model().objects.create_user(f"{CYRILLIC_A}dmin", password=None)
    with pytest.raises(ValidationError):
        services.user_signup(username="ADMIN", password=STRONG_PASSWORD)
    assert list(get_user_model().objects.values_list("username", flat=True)) == ["admin"]


@pytest.mark.django_db
def test_renaming_moves_the_skeleton_and_frees_the_old_name(make_account: MakeAccount) -> None:
    user = make_account(username="bob").user
    other = make_account(username="carol").user
    user.username = "robert"
    user.save()
    assert UsernameSkeleton.objects.get(user=user).skeleton == "robert"
    other.username = "Bob"
    other.save()  # "bob" is free again
    user.username = "BOB"
    with pytest.raises(ValidationError):
        user.save()
    user.refresh_from_db()
    assert user.username == "robert"
    user.username = "ROBERT"
    user.save()  # a user may change the case of its own name
    assert dict(UsernameSkeleton.objects.values_list("user__username", "skeleton")) == {
        "ROBERT": "robert",
        "Bob": "bob",
    }


@pytest.mark.django_db
def test_saves_that_do_not_write_the_name_cost_no_query(
    make_account: MakeAccount, django_assert_num_queries: Any
) -> None:
    user = make_account(username="dave").user
    user.last_login = timezone.now()
    with django_assert_num_queries(1):
        user.save(update_fields=["last_login"])


@pytest.fixture
def superuser_client(client: Client, db: None) -> Client:
    client.force_login(get_user_model().objects.create_superuser("boss", "boss@example.com", None))
    return client


@pytest.mark.django_db
def test_admin_refuses_adding_or_renaming_to_a_lookalike(
    superuser_client: Client, make_account: MakeAccount
) -> None:
    make_account(username="steve")
    added = superuser_client.post(
        reverse("admin:auth_user_add"),
        {"username": f"st{CYRILLIC_IE}ve", "usable_password": "false", "password1": "", "password2": ""},
    )
    assert added.status_code == 200
    assert "looks the same" in str(added.context["adminform"].form.errors["username"])
    assert not get_user_model().objects.filter(username=f"st{CYRILLIC_IE}ve").exists()

    carol = make_account(username="carol").user
    change = reverse("admin:auth_user_change", args=[carol.pk])
    data = {
        "username": "Steve",
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "date_joined_0": "2024-01-02",
        "date_joined_1": "03:04:05",
        "last_login_0": "",
        "last_login_1": "",
    }
    renamed = superuser_client.post(change, data)
    assert renamed.status_code == 200
    assert "looks the same" in str(renamed.context["adminform"].form.errors["username"])
    carol.refresh_from_db()
    assert carol.username == "carol"
    data["username"] = "caroline"
    assert superuser_client.post(change, data).status_code == 302
    assert UsernameSkeleton.objects.get(user=carol).skeleton == "caroline"


# --- The migration --------------------------------------------------------------------------------

BEFORE = [("trading", "0001_initial")]
AFTER = [("trading", "0002_username_skeleton")]


@pytest.fixture
def migrator(transactional_db: None) -> Iterator[MigrationExecutor]:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    executor.loader.build_graph()
    yield executor
    # Leave the schema as every other test expects it.
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_migration_gives_the_oldest_user_the_skeleton_and_locks_no_one_out(
    migrator: MigrationExecutor, capsys: pytest.CaptureFixture[str]
) -> None:
    old_apps = migrator.loader.project_state(BEFORE).apps
    OldUser = old_apps.get_model("auth", "User")
    joined = timezone.now() - dt.timedelta(days=30)
    made = {}
    # Created out of age order, so the order of ids is not the order of joining.
    for name, days in (
        ("Bob", 2),
        ("bob", 1),
        (f"{FULLWIDTH_B}ob", 3),
        ("alice", 0),
        (f"{CYRILLIC_A}lice", 5),
    ):
        made[name] = OldUser.objects.create(
            username=name,
            password=make_password(STRONG_PASSWORD),
            date_joined=joined + dt.timedelta(days=days),
        )

    migrator.loader.build_graph()
    migrator.migrate(AFTER)

    holders = dict(UsernameSkeleton.objects.values_list("skeleton", "user__username"))
    assert holders == {"bob": "bob", "alice": "alice"}  # the oldest of each look
    assert "Bob" in capsys.readouterr().out
    # The later look-alikes keep their names and log in as before, and may change their password.
    for name in ("Bob", f"{FULLWIDTH_B}ob", f"{CYRILLIC_A}lice"):
        user = authenticate(RequestFactory().post("/login"), username=name, password=STRONG_PASSWORD)
        assert user is not None and user.pk == made[name].pk
        user.set_password("another-horse-battery-7")
        user.save()
        assert not UsernameSkeleton.objects.filter(user=user).exists()
    # The look stays taken for newcomers; a collided user renamed to a free name gets a skeleton.
    with pytest.raises(ValidationError):
        services.user_signup(username="BOB", password=STRONG_PASSWORD)
    renamed = User.objects.get(pk=made["Bob"].pk)
    renamed.username = "bobby"
    renamed.save()
    assert UsernameSkeleton.objects.get(user=renamed).skeleton == "bobby"
