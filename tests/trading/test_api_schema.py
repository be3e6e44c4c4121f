"""The OpenAPI schema says what the API answers: every status, shape, content type and header.

The last test holds the live API to it with schemathesis (its own generated requests against a
real gunicorn, rate limits off); the others check the schema's own rules quickly.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from tests.builders import add_minute_bar_ramps, shares
from tests.processes import VENV_BIN, gunicorn_server
from trading import services
from trading.models import Account, Asset

# Examples per operation in the fuzzing phase (the coverage phase's boundary values and the
# stateful phase come on top, whatever the number). The full budget goes to PostgreSQL, which
# refuses what SQLite stores (a NUL byte in text, a string over its column's length, an integer
# past its column's range), so generated input is likelier to find a 500 there; CI's SQLite pass,
# whose live lane is the longer, fuzzes with less. Each fuzzing example is a request: at 40 the
# PostgreSQL run took 94 s of CI's 20-minute budget on a slower 2-core machine (the whole CI run
# 1,152 s), so 25, with the coverage phase's boundary values on top.
SCHEMATHESIS_MAX_EXAMPLES = {"postgresql": 25, "sqlite": 10}
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return dict(SchemaGenerator().get_schema(request=None, public=True))


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]


def test_the_schema_is_valid_and_drf_spectacular_has_no_warning(tmp_path: Path) -> None:
    # fail_on_warn raises on any warning (the deploy checks count them too); validate checks the
    # result against the OpenAPI 3 meta-schema.
    call_command("spectacular", validate=True, fail_on_warn=True, file=str(tmp_path / "schema.yaml"))


def test_every_operation_documents_its_error_answers(schema: dict[str, Any]) -> None:
    for method, path, operation in _operations(schema):
        responses = operation["responses"]
        where = f"{method} {path}"
        assert {"401", "413", "429"} <= set(responses), where
        assert responses["429"]["headers"]["Retry-After"]["required"] is True, where
        locations = {parameter["in"] for parameter in operation.get("parameters", [])}
        if "query" in locations or "requestBody" in operation:
            assert "422" in responses, where
        if "path" in locations:
            assert "404" in responses, where
        if "requestBody" in operation:
            assert {"400", "415"} <= set(responses), where
        if method not in ("GET", "HEAD"):
            assert "403" in responses, where  # a session caller without its CSRF token
        if "query" in locations:
            assert "text/html" in responses["414"]["content"], where  # gunicorn's own page
        for status, response in responses.items():
            if status >= "400" and status != "414":
                error = response["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/Error"}, (where, status)


def test_operations_that_need_an_account_or_a_name_document_403_and_404(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    for path in ("/v2/account", "/v2/orders", "/v2/positions", "/v2/watchlists", "/v2/account/activities"):
        assert "403" in paths[path]["get"]["responses"], path
    assert "404" in paths["/v2/orders:by_client_order_id"]["get"]["responses"]
    assert "404" in paths["/v2/watchlists:by_name"]["get"]["responses"]
    # Reads that need no account do not claim a 403.
    for path in ("/v2/clock", "/v2/assets", "/v2/stocks/bars", "/v2/leaderboard"):
        assert "403" not in paths[path]["get"]["responses"], path
    assert "403" in paths["/v2/leaderboard.csv"]["get"]["responses"]  # staff only


def test_a_games_board_exports_and_announcements_are_documented(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    for name in ("standings.csv", "trades.csv"):
        responses = paths[f"/v2/games/{{game_id}}/{name}"]["get"]["responses"]
        assert "text/csv" in responses["200"]["content"] and "403" in responses, name  # organiser only
    announcements = paths["/v2/games/{game_id}/announcements"]
    assert "403" in announcements["get"]["responses"] and "403" in announcements["post"]["responses"]
    board = paths["/v2/games/{game_id}/leaderboard"]["get"]
    assert "404" in board["responses"] and "403" not in board["responses"]
    assert _parameter(schema, "/v2/games/{game_id}/leaderboard", "limit")["maximum"] == 500


def test_activities_are_a_list_told_apart_by_activity_type(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    activity = components["Activity"]
    assert activity["discriminator"]["mapping"] == {
        "FILL": "#/components/schemas/TradeActivity",
        "CSD": "#/components/schemas/NonTradeActivity",
        "JNLC": "#/components/schemas/NonTradeActivity",
        "FEE": "#/components/schemas/NonTradeActivity",
    }
    trade = components[components["TradeActivity"]["properties"]["activity_type"]["$ref"].rsplit("/", 1)[1]]
    cash = components[components["NonTradeActivity"]["properties"]["activity_type"]["$ref"].rsplit("/", 1)[1]]
    assert trade["enum"] == ["FILL"] and set(cash["enum"]) == {"CSD", "JNLC", "FEE"}
    for path in ("/v2/account/activities", "/v2/account/activities/{activity_type}"):
        ok = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"type": "array", "items": {"$ref": "#/components/schemas/Activity"}}


def _parameter(schema: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    parameters = schema["paths"][path]["get"]["parameters"]
    return next(parameter["schema"] for parameter in parameters if parameter["name"] == name)


def test_parameters_document_their_enums_and_limits(schema: dict[str, Any]) -> None:
    assert "pattern" in _parameter(schema, "/v2/stocks/bars", "timeframe")
    assert _parameter(schema, "/v2/stocks/bars", "limit") == {
        "type": "integer",
        "minimum": 1,
        "maximum": 10000,
    }
    assert _parameter(schema, "/v2/stocks/bars", "sort")["enum"] == ["asc", "desc"]
    assert "pattern" in _parameter(schema, "/v2/stocks/bars", "page_token")
    assert "pattern" in _parameter(schema, "/v2/account/activities", "page_token")
    assert "pattern" in _parameter(schema, "/v2/account/portfolio/history", "period")
    assert _parameter(schema, "/v2/account/portfolio/history", "timeframe")["enum"] == [
        "1Min", "5Min", "15Min", "1H", "1D",
    ]  # fmt: skip
    assert _parameter(schema, "/v2/account/activities", "page_size") == {
        "type": "integer", "minimum": 1, "maximum": 100, "default": 100,
    }  # fmt: skip
    assert _parameter(schema, "/v2/leaderboard", "limit")["maximum"] == 500
    orders = {p["name"]: p["schema"] for p in schema["paths"]["/v2/orders"]["get"]["parameters"]}
    assert orders["status"]["enum"] == ["open", "closed", "all"] and orders["direction"]["enum"] == [
        "asc",
        "desc",
    ]


# --- The live API against its schema --------------------------------------------------------------


def _seed(
    make_asset: Callable[..., Asset], make_account: Callable[..., Account]
) -> tuple[str, str, dict[str, list[str]]]:
    """A market and a staff account with something in every table the API reads, and the ids of
    those rows, so generated requests reach the answers behind the 404s too."""
    for symbol, price in (("AAPL", "190.00"), ("MSFT", "410.00")):
        make_asset(symbol, price=price, exchange="NASDAQ")
    start = timezone.now().replace(second=0, microsecond=0) - dt.timedelta(minutes=90)
    add_minute_bar_ramps({"AAPL": 1_900_000, "MSFT": 4_100_000}, start=start, minutes=60)
    account = make_account(cash=100_000_000)
    get_user_model().objects.filter(pk=account.user_id).update(is_staff=True)  # leaderboard.csv too
    key, secret = services.api_key_create(account_id=account.pk, label="schemathesis")

    def order(**fields: Any) -> str:
        request = services.OrderRequest(side="buy", time_in_force="gtc", **fields)
        return str(services.order_place(account_id=account.pk, request=request).pk)

    filled = order(symbol="AAPL", type="market", qty=shares(5))
    resting = order(
        symbol="MSFT",
        qty=shares(1),
        type="limit",
        limit_price_units=1_000_000,
        client_order_id="schema-resting",
    )
    watchlist = services.watchlist_create(account_id=account.pk, name="Tech", symbols=["AAPL"])
    # A running game the key's user organises and another user plays in: its board, exports and
    # announcements.
    game = services.game_create(
        organiser=account.user,
        rules=services.GameRules(
            name="Schema cup",
            starts_at=start,
            ends_at=start + dt.timedelta(days=1),
            starting_cash_cents=1_000_000,
        ),
    )
    player = services.game_join(game_id=game.pk, user=make_account().user).account
    services.order_place(
        account_id=player.pk,
        request=services.OrderRequest(
            side="buy", time_in_force="gtc", symbol="AAPL", type="market", qty=shares(1)
        ),
    )
    services.game_announcement_post(game_id=game.pk, author_id=account.user_id, text="Welcome")
    known = {
        "orders": [filled, resting],
        "symbols": ["AAPL", "MSFT"],
        "watchlists": [str(watchlist.pk)],
        "watchlist_names": ["Tech"],
        "client_order_ids": ["schema-resting"],
        "games": [str(game.pk)],
    }
    return key.key_id, secret, known


def _config(known: dict[str, list[str]]) -> str:
    """Known ids for half the generated values of each such parameter; the other half stays random."""
    dictionaries = "".join(
        f"[dictionaries.{name}]\nvalues = {values!r}\n\n" for name, values in known.items()
    )
    bindings = {
        "path.order_id": "orders",
        "path.symbol_or_asset_id": "symbols",
        "path.symbol": "symbols",
        "path.watchlist_id": "watchlists",
        "path.game_id": "games",
        "query.name": "watchlist_names",
        "query.client_order_id": "client_order_ids",
        "query.symbols": "symbols",
    }
    parameters = "".join(
        f'"{key}" = {{ dictionary = "{name}", probability = 0.5 }}\n' for key, name in bindings.items()
    )
    return f"{dictionaries}[parameters]\n{parameters}".replace("'", '"')


@pytest.mark.live
@pytest.mark.xdist_group("load")  # make test runs the load generators (benchmarks, fuzzer) one at a time
def test_the_live_api_conforms_to_its_schema(
    transactional_db: None,
    tmp_path: Path,
    make_asset: Callable[..., Asset],
    make_account: Callable[..., Account],
) -> None:
    key_id, secret, known = _seed(make_asset, make_account)
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(known))
    with gunicorn_server(tmp_path, extra_env={"RATE_LIMITS_ENABLED": "false"}) as server:
        run = subprocess.run(
            [
                str(VENV_BIN / "schemathesis"), "--config-file", str(config), "--no-color",
                "run", f"{server.base_url}/v2/openapi.json",
                "--checks", ",".join(CHECKS),
                "--max-examples", str(SCHEMATHESIS_MAX_EXAMPLES[connection.vendor]),
                # One worker: with two, hypothesis's lambda descriptions call ast.parse from two
                # threads at once, which Python 3.11 can fail ("AST constructor recursion depth
                # mismatch") and schemathesis reports as an error of the run.
                "--workers", "1",
                "--request-timeout", "30",
                "--header", f"APCA-API-KEY-ID: {key_id}",
                "--header", f"APCA-API-SECRET-KEY: {secret}",
                "--report-dir", str(tmp_path / "report"),
            ],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )  # fmt: skip
        server_log = server.log()
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"{output[-20000:]}\n--- server log ---\n{server_log[-5000:]}"
    assert " passed" in output, output[-5000:]  # it generated and ran cases
