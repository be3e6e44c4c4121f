# Statements move from the jobs app to analytics (a report of the read side). The table, its
# rows, constraint and indexes stay as they are (jobs_statement): only Django's state changes
# here, and jobs' 0002 drops the model from jobs' state once this one holds it. The content type
# follows the model, so permissions granted on statements and admin log entries keep pointing at it.

import uuid

import django.db.models.deletion
from django.db import migrations, models

import analytics.models


def content_type_to_analytics(apps, schema_editor):
    _content_type_move(apps, schema_editor, source="jobs", target="analytics")


def content_type_to_jobs(apps, schema_editor):
    _content_type_move(apps, schema_editor, source="analytics", target="jobs")


def _content_type_move(apps, schema_editor, *, source, target):
    content_types = apps.get_model("contenttypes", "ContentType").objects.using(schema_editor.connection.alias)
    if content_types.filter(app_label=target, model="statement").exists():
        return
    content_types.filter(app_label=source, model="statement").update(app_label=target)


class Migration(migrations.Migration):

    dependencies = [
        ("analytics", "0002_frontend_sample"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("jobs", "0001_initial"),
        ("trading", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="Statement",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("period", models.CharField(help_text="YYYY-MM", max_length=7)),
                        ("period_start", models.DateTimeField()),
                        ("period_end", models.DateTimeField()),
                        ("opening_cash_cents", models.BigIntegerField()),
                        ("closing_cash_cents", models.BigIntegerField()),
                        ("opening_equity_cents", models.BigIntegerField()),
                        ("closing_equity_cents", models.BigIntegerField()),
                        ("commissions_cents", models.BigIntegerField()),
                        ("realized_pl_cents", models.BigIntegerField()),
                        ("trade_count", models.PositiveIntegerField()),
                        ("pdf", models.FileField(max_length=255, upload_to=analytics.models.statement_upload_to)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "account",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="statements",
                                to="trading.account",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "jobs_statement",
                        "ordering": ["-period"],
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("account", "period"), name="statement_account_period_unique"
                            )
                        ],
                    },
                ),
            ],
        ),
        migrations.RunPython(content_type_to_analytics, content_type_to_jobs),
    ]
