"""A database outage with real processes: the test's own PostgreSQL server is stopped for about
ten seconds under a running market and gunicorn, then started again.

The market rides it out (its windows wait, then the simulator waits) and resumes by itself: every
window is published once, after its commit, with no window number skipped, and the stored seqs
run without a gap or a duplicate. The web answers 503 at once while the server is down (Alpaca's
shape under /v2/, a plain page elsewhere) and 200 when it is back.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest
from pytest_django.fixtures import Settings

from tests.processes import ROOT, VENV_BIN, PostgresServer, gunicorn_server, postgres_server
from tests.realtime.servers import WindowCollector, market_env, market_process

SYMBOLS = ["AAA", "BBB", "CCC", "DDD"]
OUTAGE_S = 10.0
# While the server is down the web must answer within this long (its connect fails at once).
ANSWER_WITHIN_S = 2.0

SEED = f"""
import json
from django.contrib.auth import get_user_model
from trading import services
from trading.models import Asset
for symbol in {SYMBOLS!r}:
    Asset.objects.create(symbol=symbol, name=symbol, sector="Technology")
user = get_user_model().objects.create_user(username="outage", password="outage-pw-1")
account = services.account_open(user=user)
key, secret = services.api_key_create(account_id=account.pk, label="outage")
print(json.dumps({{"key_id": key.key_id, "secret": secret}}))
"""


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(VENV_BIN / "python"), "manage.py", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def get(url: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    """Status, content type and body; within ANSWER_WITHIN_S or the test fails."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=ANSWER_WITHIN_S) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def stored_seqs(server: PostgresServer) -> list[tuple[str, int]]:
    with psycopg.connect(server.url(), autocommit=True) as db:
        rows = db.execute("SELECT symbol, seq FROM trading_stockpricehistory ORDER BY symbol, seq").fetchall()
    return [(str(symbol), int(seq)) for symbol, seq in rows]


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.db_backend("postgresql")
def test_the_market_and_the_web_ride_out_a_database_restart(
    stream_settings: Settings, tmp_path: Path
) -> None:
    collector: WindowCollector | None = None
    with postgres_server() as server:
        env = market_env(overrides={"MARKET_HALT_POLL_S": 0.5}, DATABASE_URL=server.url())
        try:
            manage(env, "migrate", "--noinput", "-v0")
            key = json.loads(manage(env, "shell", "-c", SEED).strip().splitlines()[-1])
            headers = {"APCA-API-KEY-ID": key["key_id"], "APCA-API-SECRET-KEY": key["secret"]}
            collector = WindowCollector(stream_settings.MARKET_WINDOWS_CHANNEL)
            ticks = lambda since=0: sum(len(w.ticks) for w in collector.windows[since:])  # noqa: E731

            with (
                market_process(tmp_path, env, "market", symbols=len(SYMBOLS)) as market,
                gunicorn_server(tmp_path, extra_env={"DATABASE_URL": server.url()}, workers=1) as web,
            ):
                account_url, page_url = f"{web.base_url}/v2/account", f"{web.base_url}/"
                collector.wait_for(lambda: ticks() >= 20)
                assert get(account_url, headers)[0] == 200
                assert get(page_url, {})[0] == 200

                server.stop()
                stopped = time.monotonic()
                answers = []
                while time.monotonic() - stopped < OUTAGE_S:
                    answers.append((get(account_url, headers), get(page_url, {})))
                    assert market.poll() is None, "the market process stopped"
                    time.sleep(0.5)
                during = len(collector.windows)
                server.start()

                for (api_status, api_type, api_body), (page_status, page_type, page_body) in answers:
                    assert (api_status, api_type) == (503, "application/json"), api_body
                    assert json.loads(api_body)["code"] == 50310000
                    assert page_status == 503 and page_type.startswith("text/html"), page_body
                # The market resumes by itself, and so does the web.
                collector.wait_for(lambda: ticks(during) >= 20, what="ticks after the restart")
                deadline = time.monotonic() + 10
                while get(account_url, headers)[0] != 200 and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert get(account_url, headers)[0] == 200
                assert get(page_url, {})[0] == 200

                market.send_signal(signal.SIGTERM)
                assert market.wait(timeout=30) == 0
            time.sleep(0.3)  # the last windows still on their way over pub/sub
            stored = stored_seqs(server)
        except BaseException:
            print(server.log())
            raise
        finally:
            if collector is not None:
                collector.close()

    assert collector is not None
    numbers = [w.number for w in collector.windows]
    assert numbers == list(range(1, len(numbers) + 1)), "a window was skipped or published twice"
    published = [(t.symbol, t.seq) for w in collector.windows for t in w.ticks]
    assert len(published) == len(set(published))
    assert sorted(published) == stored  # everything published was stored, and only that
    for symbol in SYMBOLS:
        seqs = [seq for s, seq in stored if s == symbol]
        assert seqs == list(range(1, len(seqs) + 1)), f"{symbol}: a gap or a duplicate"

    log = (tmp_path / "market.log").read_text()
    assert len(re.findall(r"tick writer: database unavailable", log)) == 1, log
    ended = re.findall(r"tick writer: database available again after ([\d.]+) s \(outage 1\)", log)
    assert len(ended) == 1 and float(ended[0]) >= OUTAGE_S - 1, log
    assert re.search(r"database outages 1 \(", log), log
