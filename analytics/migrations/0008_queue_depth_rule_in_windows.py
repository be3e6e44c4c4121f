"""The shipped "Market writer queue depth" rule in the unit the metric has: windows, not ticks.

``market_queue_depth`` counts the windows waiting for the writer, and the queue holds at most
``MARKET_QUEUE_MAX_WINDOWS`` (50 by default), so the rule as first shipped (10,000) could never
fire. A rule an operator already edited in the admin is left as it is.
"""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

NAME = "Market writer queue depth"
SHIPPED = {"threshold": 10000, "clear_threshold": 1000, "description": "Ticks waiting for the writer."}
IN_WINDOWS = {
    "threshold": 40,
    "clear_threshold": 10,
    "description": "Windows of ticks waiting for the writer (the queue holds 50 by default): the "
    "database is not keeping up, and a full queue slows the simulator.",
}


def rule_in_windows(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("analytics", "AlertRule").objects.filter(name=NAME, **SHIPPED).update(**IN_WINDOWS)


def rule_as_shipped(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("analytics", "AlertRule").objects.filter(name=NAME, **IN_WINDOWS).update(**SHIPPED)


class Migration(migrations.Migration):
    dependencies = [("analytics", "0007_fractional_net_shares")]

    operations = [migrations.RunPython(rule_in_windows, rule_as_shipped)]
