"""Seed a demo: the S&P 500 universe, price history, one tick per symbol, demo logins.

History (trading/demo_history.py): 400 trading days of daily bars and 5 trading days of minute
bars by default (the current day, up to now, counted in both), deterministic for ``--seed`` and
``--now``, inserted by the backend's fastest path with progress output. The daily bars of the
days with minute bars are their exact aggregates, and each symbol's one stored tick is the newest
minute's close at its starting price, so the market process continues from it seamlessly. Ticks
for days would be millions of rows; one tick per symbol lets market orders fill before the market
process has run.

Logins are printed and written to ``var/demo_credentials.txt`` (mode 0600), because API secrets
are stored only as an HMAC and cannot be shown again; ``--if-empty`` on an already seeded database
prints that file instead of seeding, which is how ``make run`` shows them on every start.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from trading import services
from trading.demo_history import BarInserter, HistoryGenerator
from trading.models import Asset, DailyBar, MinuteBar, StockPriceHistory
from trading.universe import UniverseAsset, sp500

CREDENTIALS_FILENAME = "demo_credentials.txt"
ADMIN_USERNAME = "admin"
DEMO_USER_PREFIX = "demo"
DEFAULT_DAYS = 400  # a 200-day average needs 200, a year-over-year comparison a year of sessions
DEFAULT_MINUTE_DAYS = 5


# --- logins --------------------------------------------------------------------------------------


@dataclass
class Login:
    username: str
    password: str
    role: str = "user"
    api_key_id: str = ""
    api_secret: str = ""

    def as_line(self) -> str:
        fields = {"username": self.username, "password": self.password, "role": self.role}
        if self.api_key_id:
            fields.update(api_key_id=self.api_key_id, api_secret=self.api_secret)
        return " ".join(f"{name}={value}" for name, value in fields.items())

    @classmethod
    def from_line(cls, line: str) -> Login | None:
        values = dict(part.partition("=")[::2] for part in line.split())
        if not values.get("username"):
            return None
        return cls(
            username=values["username"],
            password=values.get("password", ""),
            role=values.get("role", "user"),
            api_key_id=values.get("api_key_id", ""),
            api_secret=values.get("api_secret", ""),
        )

    def describe(self) -> str:
        text = f"  {self.username:<8} password: {self.password}"
        if self.role == "superuser":
            text += "   (staff superuser: /admin/)"
        if self.api_key_id:
            text += f"\n           API key id: {self.api_key_id}   secret: {self.api_secret}"
        return text


def read_logins(path: Path) -> list[Login]:
    if not path.exists():
        return []
    logins = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            login = Login.from_line(line)
            if login is not None:
                logins.append(login)
    return logins


def write_logins(path: Path, logins: Sequence[Login]) -> None:
    """Replace the file atomically, readable by its owner only: it holds passwords and secrets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = timezone.now().strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"# Demo logins written by `manage.py seed_demo` ({stamp}). Private: passwords and API secrets.\n"
        "# Web logins at /admin/; API keys go in APCA-API-KEY-ID / APCA-API-SECRET-KEY.\n"
        + "".join(login.as_line() + "\n" for login in logins)
    )
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def _new_password() -> str:
    return secrets.token_urlsafe(9)


# --- the command ---------------------------------------------------------------------------------


@dataclass
class SeedReport:
    assets: int = 0
    daily_bars: int = 0
    minute_bars: int = 0
    ticks: int = 0
    logins: list[Login] = field(default_factory=list)


class Command(BaseCommand):
    help = "Seed demo assets (S&P 500), recent bars, one tick per symbol, demo users with API keys."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing (except print the saved demo logins) when assets already exist.",
        )
        parser.add_argument("--symbols", type=int, default=0, help="How many symbols (default: all ~500).")
        parser.add_argument(
            "--days",
            type=int,
            default=DEFAULT_DAYS,
            help=f"Daily bars for this many trading days (default {DEFAULT_DAYS}).",
        )
        parser.add_argument(
            "--minute-days",
            type=int,
            default=DEFAULT_MINUTE_DAYS,
            help=f"Minute bars for this many trading days, today's so far included (default {DEFAULT_MINUTE_DAYS}).",
        )
        parser.add_argument(
            "--minutes",
            type=int,
            default=None,
            help="Minute bars for this many trading minutes before now instead of --minute-days (small demos).",
        )
        parser.add_argument("--users", type=int, default=3, help="Demo users demo1..demoN.")
        parser.add_argument("--seed", type=int, default=42, help="Seed of the price paths.")
        parser.add_argument(
            "--now",
            default="",
            help="End the history at this ISO 8601 instant instead of now (same seed and instant: same data).",
        )
        parser.add_argument(
            "--credentials-file",
            default="",
            help=f"Where to save the logins (default: VAR_DIR/{CREDENTIALS_FILENAME}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("symbols", "days", "minute_days", "minutes", "users"):
            if options[name] is not None and options[name] < 0:
                raise CommandError(f"--{name} must not be negative")
        path = Path(options["credentials_file"] or Path(settings.VAR_DIR) / CREDENTIALS_FILENAME)
        if options["if_empty"] and Asset.objects.exists():
            self.stdout.write("Demo data already present; nothing to seed.")
            self._print_logins(read_logins(path), path)
            return

        started = time.monotonic()
        universe = list(sp500())
        if options["symbols"]:
            universe = universe[: options["symbols"]]
        report = SeedReport()
        self._seed_market(universe, options, report)
        self._seed_users(options["users"], path, report)
        self.stdout.write(
            f"Seeded {report.assets} assets, {report.daily_bars} daily bars, {report.minute_bars} minute "
            f"bars, {report.ticks} ticks and {len(report.logins)} logins in {time.monotonic() - started:.1f}s."
        )
        self._print_logins(read_logins(path), path)

    def _seed_market(
        self, universe: list[UniverseAsset], options: dict[str, Any], report: SeedReport
    ) -> None:
        existing = set(Asset.objects.values_list("symbol", flat=True))
        # In symbol order: each symbol's bars then append to the (symbol, start) index.
        new = sorted(
            (asset for asset in universe if asset.symbol not in existing), key=lambda asset: asset.symbol
        )
        if existing:
            self.stdout.write(
                f"{len(existing)} assets already exist and keep their history; "
                f"{len(new)} new of {len(universe)} requested."
            )
        if not new:
            return
        symbols = [asset.symbol for asset in new]
        with_ticks = set(
            StockPriceHistory.objects.filter(symbol__in=symbols).values_list("symbol", flat=True).distinct()
        )
        # Bars a market process already wrote for these symbols are kept (the slower path that
        # skips existing rows); a fresh database takes the fast one.
        conflicts = (
            MinuteBar.objects.filter(symbol__in=symbols).exists()
            or DailyBar.objects.filter(symbol__in=symbols).exists()
        )
        generator = HistoryGenerator(
            seed=options["seed"],
            now=_parse_now(options["now"]),
            days=options["days"],
            minute_days=options["minute_days"],
            minutes=options["minutes"],
        )
        inserter = BarInserter(conflicts=conflicts)
        minute_span = (
            f"the last {options['minutes']} trading minutes"
            if options["minutes"] is not None
            else f"{options['minute_days']} trading days"
        )
        self.stdout.write(
            f"Seeding {len(new)} assets: {len(generator.daily_sessions)} trading days of daily bars, "
            f"minute bars for {minute_span} ({len(generator.minute_starts)} minutes each), one tick each "
            f"(seed {options['seed']}, {inserter.path}) ..."
        )
        with transaction.atomic():
            Asset.objects.bulk_create(
                [
                    Asset(
                        symbol=a.symbol,
                        name=a.name,
                        sector=a.sector,
                        exchange=a.exchange,
                        initial_price_units=a.initial_price_units,
                    )
                    for a in new
                ],
                batch_size=500,
            )
            report.assets = len(new)
            ticks: list[StockPriceHistory] = []
            for _, asset in self._progress(new, report):
                history = generator.history(asset)
                report.daily_bars += inserter.insert(DailyBar, asset.symbol, history.daily)
                report.minute_bars += inserter.insert(MinuteBar, asset.symbol, history.minute)
                if asset.symbol not in with_ticks:
                    ticks.append(history.tick)
            self.stdout.write("  committing ...")
            StockPriceHistory.objects.bulk_create(ticks, batch_size=1_000, ignore_conflicts=True)
            report.ticks = len(ticks)

    def _progress(
        self, items: Sequence[UniverseAsset], report: SeedReport
    ) -> Iterator[tuple[int, UniverseAsset]]:
        """Yield (number done, item), printing a line at each further 10 %."""
        total, shown = len(items), 0
        started = time.monotonic()
        for index, item in enumerate(items, start=1):
            yield index, item
            percent = index * 100 // total
            if percent >= shown + 10 or index == total:
                shown = percent - percent % 10
                elapsed = time.monotonic() - started
                rows = report.daily_bars + report.minute_bars
                self.stdout.write(
                    f"  history {percent:3d}% ({index}/{total} symbols, {rows:,} bars, "
                    f"{elapsed:.1f} s, {rows / max(elapsed, 1e-9):,.0f} bars/s)"
                )

    def _seed_users(self, count: int, path: Path, report: SeedReport) -> None:
        user_model = get_user_model()
        saved = {login.username: login for login in read_logins(path)}
        wanted = [ADMIN_USERNAME] + [f"{DEMO_USER_PREFIX}{n}" for n in range(1, count + 1)]
        existing = set(user_model.objects.filter(username__in=wanted).values_list("username", flat=True))
        created: list[Login] = []
        with transaction.atomic():
            if ADMIN_USERNAME not in existing:
                password = _new_password()
                user_model.objects.create_superuser(ADMIN_USERNAME, "admin@example.com", password)
                created.append(Login(username=ADMIN_USERNAME, password=password, role="superuser"))
            for username in wanted[1:]:
                if username in existing:
                    continue
                password = _new_password()
                user = user_model.objects.create_user(username, f"{username}@example.com", password)
                account = services.account_open(user=user)
                key, secret = services.api_key_create(account_id=account.pk, label="demo")
                created.append(
                    Login(username=username, password=password, api_key_id=key.key_id, api_secret=secret)
                )
        if existing:
            self.stdout.write(f"Users already present, left unchanged: {', '.join(sorted(existing))}.")
        report.logins = created
        if created or not path.exists():
            merged = {**saved, **{login.username: login for login in created}}
            ordered = sorted(merged.values(), key=lambda login: _username_order(login.username))
            write_logins(path, ordered)

    def _print_logins(self, logins: Sequence[Login], path: Path) -> None:
        if not logins:
            self.stdout.write(f"No saved demo logins in {path}.")
            return
        self.stdout.write(f"Demo logins (saved in {path}, mode 0600):")
        for login in logins:
            self.stdout.write(login.describe())


def _parse_now(text: str) -> dt.datetime:
    if not text:
        return timezone.now()
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--now must be an ISO 8601 date and time, not {text!r}") from None
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, dt.UTC)


def _username_order(username: str) -> tuple[int, int, str]:
    if username == ADMIN_USERNAME:
        return (0, 0, username)
    suffix = username.removeprefix(DEMO_USER_PREFIX)
    return (1, int(suffix), username) if suffix.isdigit() else (2, 0, username)
