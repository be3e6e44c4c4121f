"""Seed a demo: the S&P 500 universe, recent price history, one tick per symbol, demo logins.

History is geometric Brownian motion with a market factor, a sector factor and each symbol's own
noise, drawn from RNGs keyed by ``--seed`` and the factor's name, so the same seed gives the same
paths whatever ``--symbols`` is. Paths are drawn backwards from each symbol's starting price, so
the newest close, the seeded tick and ``Asset.initial_price_units`` agree and the market process
continues from them seamlessly.

Only bars are seeded (minute bars for the last ``--minutes``, daily bars for ``--days``): seeding
ticks for days would be millions of rows. One tick per symbol lets market orders fill before the
market process has run.

Logins are printed and written to ``var/demo_credentials.txt`` (mode 0600), because API secrets
are stored only as an HMAC and cannot be shown again; ``--if-empty`` on an already seeded database
prints that file instead of seeding, which is how ``make run`` shows them on every start.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
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

from trading import calendar, services
from trading.models import Asset, DailyBar, MinuteBar, StockPriceHistory
from trading.units import PRICE_SCALE, UNITS_PER_CENT
from trading.universe import UniverseAsset, sp500, stable_seed

CREDENTIALS_FILENAME = "demo_credentials.txt"
ADMIN_USERNAME = "admin"
DEMO_USER_PREFIX = "demo"
BATCH_ROWS = 5_000

# Daily volatilities of the three components of a log return (about 25 % a year in total).
MARKET_DAILY_SIGMA = 0.009
SECTOR_DAILY_SIGMA = 0.006
IDIO_DAILY_SIGMA_RANGE = (0.007, 0.018)
BETA_RANGE = (0.7, 1.3)
MARKET_DAILY_DRIFT = 0.0003


# --- price paths ---------------------------------------------------------------------------------


def _cents(dollars: float) -> int:
    return max(1, round(dollars * 100)) * UNITS_PER_CENT


def _cents_up(dollars: float) -> int:
    return max(1, math.ceil(dollars * 100 - 1e-9)) * UNITS_PER_CENT


def _cents_down(dollars: float) -> int:
    return max(1, math.floor(dollars * 100 + 1e-9)) * UNITS_PER_CENT


@dataclass(frozen=True)
class Session:
    """One trading day's bar window: it starts at ``start`` and (for today) ends at ``end``."""

    start: dt.datetime
    end: dt.datetime


@dataclass
class SymbolHistory:
    daily: list[DailyBar]
    minute: list[MinuteBar]
    tick: StockPriceHistory


@dataclass
class _Factors:
    daily: list[float]
    minute: list[float]


class HistoryGenerator:
    """Deterministic bars for any symbol, ending at its starting price at ``now``."""

    def __init__(self, *, seed: int, now: dt.datetime, days: int, minutes: int) -> None:
        self.seed = seed
        self.now = now
        self.end_minute, session_open = self._history_end(now)
        if session_open is not None:
            # Real hours: no minute bars before the latest session opened.
            minutes = min(minutes, (self.end_minute - session_open) // dt.timedelta(minutes=1))
        self.minutes = max(0, minutes)
        self.sessions = self._sessions(days)
        self.minutes_per_day = 1440 if calendar.always_open() else 390
        self.minute_scale = 1 / math.sqrt(self.minutes_per_day)
        self.window_start = self.end_minute - dt.timedelta(minutes=minutes)
        # Which minute bars (by index) fall in each session: the same for every symbol.
        self.session_minutes = [
            range(self._minute_index(session.start), self._minute_index(session.end))
            for session in self.sessions
        ]
        self.market = self._factors("market", MARKET_DAILY_SIGMA, MARKET_DAILY_DRIFT)
        self._sectors: dict[str, _Factors] = {}

    @staticmethod
    def _history_end(now: dt.datetime) -> tuple[dt.datetime, dt.datetime | None]:
        """Where history stops: now, or with real hours the latest session's close (and its open)."""
        end = now.replace(second=0, microsecond=0)
        if calendar.always_open():
            return end, None
        today = calendar.trading_day_of(now)
        zone = calendar.trading_zone()
        for day in reversed(calendar.sessions_between(today - dt.timedelta(days=10), today)):
            opened = dt.datetime.combine(day.date, day.open, tzinfo=zone)
            if opened <= now:
                closed = dt.datetime.combine(day.date, day.close, tzinfo=zone)
                return min(end, closed), opened
        return end, None

    def _sessions(self, days: int) -> list[Session]:
        if days <= 0:
            return []
        today = calendar.trading_day_of(self.now)
        dates = [s.date for s in calendar.sessions_between(today - dt.timedelta(days=2 * days + 10), today)]
        sessions = []
        for date in dates:
            start = calendar.day_start(date)
            end = min(calendar.day_start(date + dt.timedelta(days=1)), self.end_minute)
            if end > start:  # not a session that has yet to open
                sessions.append(Session(start=start, end=end))
        return sessions[-days:]

    def _minute_index(self, moment: dt.datetime) -> int:
        offset = (moment - self.window_start) // dt.timedelta(minutes=1)
        return min(max(offset, 0), self.minutes)

    def _factors(self, name: str, sigma: float, drift: float = 0.0) -> _Factors:
        rng = random.Random(stable_seed(self.seed, "factor", name))
        daily = [rng.gauss(drift, sigma) for _ in self.sessions]
        minute = [
            rng.gauss(drift / self.minutes_per_day, sigma * self.minute_scale) for _ in range(self.minutes)
        ]
        return _Factors(daily=daily, minute=minute)

    def _sector(self, sector: str) -> _Factors:
        if sector not in self._sectors:
            self._sectors[sector] = self._factors(f"sector:{sector}", SECTOR_DAILY_SIGMA)
        return self._sectors[sector]

    def history(self, asset: UniverseAsset) -> SymbolHistory:
        rng = random.Random(stable_seed(self.seed, "symbol", asset.symbol))
        beta = rng.uniform(*BETA_RANGE)
        idio = rng.uniform(*IDIO_DAILY_SIGMA_RANGE)
        sector = self._sector(asset.sector)
        anchor = asset.initial_price_units / PRICE_SCALE
        # Average daily volume: millions of shares, fewer for expensive stocks.
        daily_volume = math.exp(rng.gauss(math.log(4e6), 0.6)) * math.sqrt(100 / anchor)
        trade_size = rng.uniform(60, 150)

        minute_bars, minute_close_at = self._minutes(
            asset.symbol, rng, anchor, beta, idio, sector, daily_volume, trade_size
        )
        window_open = minute_bars[0].open_units / PRICE_SCALE if minute_bars else anchor
        daily_bars = self._days(
            asset.symbol, rng, anchor, window_open, beta, idio, sector, daily_volume, trade_size,
            minute_bars, minute_close_at,
        )  # fmt: skip
        return SymbolHistory(daily=daily_bars, minute=minute_bars, tick=self._tick(asset, rng))

    def _minutes(
        self,
        symbol: str,
        rng: random.Random,
        anchor: float,
        beta: float,
        idio: float,
        sector: _Factors,
        daily_volume: float,
        trade_size: float,
    ) -> tuple[list[MinuteBar], dict[dt.datetime, float]]:
        sigma = idio * self.minute_scale
        closes = [anchor]
        for k in reversed(range(self.minutes)):
            step = beta * self.market.minute[k] + sector.minute[k] + rng.gauss(0, sigma)
            closes.append(closes[-1] / math.exp(step))
        closes.reverse()  # closes[0] is the window's opening price, closes[-1] the anchor
        bars = []
        close_at: dict[dt.datetime, float] = {}
        for k in range(self.minutes):
            start = self.window_start + dt.timedelta(minutes=k)
            open_units, close_units = _cents(closes[k]), _cents(closes[k + 1])
            wiggle = abs(rng.gauss(0, sigma * 0.6))
            high = _cents_up(max(open_units, close_units) / PRICE_SCALE * math.exp(wiggle))
            low = _cents_down(
                min(open_units, close_units) / PRICE_SCALE * math.exp(-abs(rng.gauss(0, sigma * 0.6)))
            )
            volume = max(1, round(daily_volume / self.minutes_per_day * math.exp(rng.gauss(0, 0.5))))
            bars.append(
                MinuteBar(
                    symbol=symbol,
                    start=start,
                    open_units=open_units,
                    high_units=high,
                    low_units=low,
                    close_units=close_units,
                    volume=volume,
                    trade_count=max(1, round(volume / trade_size)),
                    vwap_units=(open_units + high + low + close_units) // 4,
                )
            )
            close_at[start + dt.timedelta(minutes=1)] = closes[k + 1]
        return bars, close_at

    def _days(
        self,
        symbol: str,
        rng: random.Random,
        anchor: float,
        window_open: float,
        beta: float,
        idio: float,
        sector: _Factors,
        daily_volume: float,
        trade_size: float,
        minute_bars: Sequence[MinuteBar],
        minute_close_at: dict[dt.datetime, float],
    ) -> list[DailyBar]:
        """Daily bars, newest first while drawing, agreeing with the minute bars they overlap."""
        bars = []
        day_sigma = math.sqrt((beta * MARKET_DAILY_SIGMA) ** 2 + SECTOR_DAILY_SIGMA**2 + idio**2)
        # The opening price of the later day (or of the minute window), walking backwards.
        next_open = window_open
        for index in reversed(range(len(self.sessions))):
            session = self.sessions[index]
            inside = [minute_bars[k] for k in self.session_minutes[index]]
            day_seconds = (session.end - session.start).total_seconds()
            # The part of the day the minute bars do not cover moves in one coarse step.
            coarse_fraction = max(0.0, (day_seconds - 60 * len(inside)) / 86_400)
            if session.end > self.window_start:
                # The day overlaps the minute window: its close and its minutes come from there.
                close = minute_close_at.get(session.end, anchor) if session.end < self.end_minute else anchor
                if session.start >= self.window_start:
                    open_ = minute_close_at.get(session.start, window_open)
                else:
                    fraction = (self.window_start - session.start).total_seconds() / 86_400
                    step = (
                        beta * self.market.daily[index] + sector.daily[index] + rng.gauss(0, idio)
                    ) * math.sqrt(fraction)
                    open_ = window_open / math.exp(step)
            else:
                # Entirely before the window: the close is the next day's open (no overnight gap in
                # an always-open market; over a weekend the price did not move).
                close = next_open
                step = beta * self.market.daily[index] + sector.daily[index] + rng.gauss(0, idio)
                open_ = close / math.exp(step * math.sqrt(day_seconds / 86_400))
            next_open = open_
            open_units, close_units = _cents(open_), _cents(close)
            spread = day_sigma * math.sqrt(coarse_fraction) * 0.8
            high = max(open_units, close_units, *(bar.high_units for bar in inside))
            low = min(open_units, close_units, *(bar.low_units for bar in inside))
            high = _cents_up(high / PRICE_SCALE * math.exp(abs(rng.gauss(0, spread))))
            low = _cents_down(low / PRICE_SCALE * math.exp(-abs(rng.gauss(0, spread))))
            coarse_volume = round(daily_volume * coarse_fraction * math.exp(rng.gauss(0, 0.3)))
            volume = max(1, coarse_volume + sum(bar.volume for bar in inside))
            bars.append(
                DailyBar(
                    symbol=symbol,
                    start=session.start,
                    open_units=open_units,
                    high_units=high,
                    low_units=low,
                    close_units=close_units,
                    volume=volume,
                    trade_count=max(1, round(volume / trade_size)),
                    vwap_units=(open_units + high + low + close_units) // 4,
                )
            )
        bars.reverse()
        return bars

    def _tick(self, asset: UniverseAsset, rng: random.Random) -> StockPriceHistory:
        price = asset.initial_price_units
        # A spread of one to four basis points, at least a cent each side, on whole cents.
        half_spread = max(1, math.ceil(price * rng.uniform(0.5e-4, 2e-4) / UNITS_PER_CENT)) * UNITS_PER_CENT
        return StockPriceHistory(
            symbol=asset.symbol,
            seq=1,
            price_units=price,
            size=rng.randint(1, 5) * 100,
            bid_units=max(UNITS_PER_CENT, price - half_spread),
            bid_size=rng.randint(1, 10) * 100,
            ask_units=price + half_spread,
            ask_size=rng.randint(1, 10) * 100,
            recorded_at=self.now,
        )


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
        parser.add_argument("--days", type=int, default=30, help="Daily bars for this many trading days.")
        parser.add_argument("--minutes", type=int, default=120, help="Minute bars for this many minutes.")
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
        for name in ("symbols", "days", "minutes", "users"):
            if options[name] < 0:
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
        new = [asset for asset in universe if asset.symbol not in existing]
        if existing:
            self.stdout.write(
                f"{len(existing)} assets already exist and keep their history; "
                f"{len(new)} new of {len(universe)} requested."
            )
        if not new:
            return
        with_ticks = set(
            StockPriceHistory.objects.filter(symbol__in=[a.symbol for a in new])
            .values_list("symbol", flat=True)
            .distinct()
        )
        generator = HistoryGenerator(
            seed=options["seed"],
            now=_parse_now(options["now"]),
            days=options["days"],
            minutes=options["minutes"],
        )
        self.stdout.write(
            f"Seeding {len(new)} assets: {options['days']} days of daily bars, {options['minutes']} minutes "
            f"of minute bars, one tick each (seed {options['seed']}) ..."
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
            daily: list[DailyBar] = []
            minute: list[MinuteBar] = []
            ticks: list[StockPriceHistory] = []
            for done, asset in self._progress(new):
                history = generator.history(asset)
                daily += history.daily
                minute += history.minute
                if asset.symbol not in with_ticks:
                    ticks.append(history.tick)
                if len(daily) + len(minute) >= BATCH_ROWS or done == len(new):
                    report.daily_bars += self._insert(DailyBar, daily)
                    report.minute_bars += self._insert(MinuteBar, minute)
                    report.ticks += self._insert(StockPriceHistory, ticks)
                    daily, minute, ticks = [], [], []

    def _progress(self, items: Sequence[UniverseAsset]) -> Iterator[tuple[int, UniverseAsset]]:
        """Yield (number done, item), printing a line at each further 10 %."""
        total, shown = len(items), 0
        for index, item in enumerate(items, start=1):
            yield index, item
            percent = index * 100 // total
            if percent >= shown + 10 or index == total:
                shown = percent - percent % 10
                self.stdout.write(f"  history {percent:3d}% ({index}/{total} symbols)")

    @staticmethod
    def _insert(model: type[DailyBar] | type[MinuteBar] | type[StockPriceHistory], rows: list[Any]) -> int:
        if not rows:
            return 0
        # ignore_conflicts: rows a market process already wrote for a symbol are kept, not duplicated.
        model.objects.bulk_create(rows, batch_size=1_000, ignore_conflicts=True)
        return len(rows)

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
