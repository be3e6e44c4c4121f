# Statements now belong to analytics (its 0003 holds the model on the same table, jobs_statement):
# the model leaves jobs' state only; the table and its rows stay.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("analytics", "0003_statement"),
        ("jobs", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[migrations.DeleteModel(name="Statement")],
        ),
    ]
