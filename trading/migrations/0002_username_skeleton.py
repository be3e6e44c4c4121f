"""A unique skeleton per username (trading/usernames.py), filled for the users that exist.

Existing users are taken oldest first (``date_joined``, then id), and each gets the skeleton of
its username unless an older user already holds it. A later user whose name collides (``Bob``
after ``bob``, or a name with a Cyrillic letter after its Latin twin) keeps its name, password,
account and keys and logs in as before; it only holds no skeleton. The older user's skeleton keeps
the name's look taken, so no one else can sign up or be renamed to it; renaming the later user to
a free name gives it a skeleton. Nothing is deleted or renamed and no one is locked out. The users
left without a skeleton are listed when the migration runs, for the operator to review.

Reversing drops the table; usernames are untouched either way.
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from trading.usernames import username_skeleton


def fill_skeletons(apps: Any, schema_editor: Any) -> None:
    user_model = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    skeleton_model = apps.get_model("trading", "UsernameSkeleton")
    alias = schema_editor.connection.alias
    taken: set[str] = set()
    rows = []
    collided: list[str] = []
    users = user_model.objects.using(alias).order_by("date_joined", "pk").values_list("pk", "username")
    for user_id, username in users.iterator():
        skeleton = username_skeleton(username)
        if skeleton in taken:
            collided.append(username)
            continue
        taken.add(skeleton)
        rows.append(skeleton_model(user_id=user_id, skeleton=skeleton))
    skeleton_model.objects.using(alias).bulk_create(rows, batch_size=1000)
    if collided:
        print(f"\n  Usernames too similar to an older user's, left without a skeleton: {', '.join(collided)}")


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("trading", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="UsernameSkeleton",
            fields=[
                (
                    "user",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="username_skeleton",
                        serialize=False,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                ("skeleton", models.TextField(unique=True)),
            ],
        ),
        migrations.RunPython(fill_skeletons, migrations.RunPython.noop, elidable=False),
    ]
