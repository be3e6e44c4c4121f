"""The organiser flow of a trading game in Debian's chromium against the live stack
(tests/e2e/browser.py; README, Running a game): an organiser creates an invite-only game from the
pages and posts an announcement; two users join by its link and read it; one trades from the
dashboard's order ticket on the game account and the other through alpaca-py with a key made for
its game account on the API keys page; both appear on the game's leaderboard, and on the first
player's dashboard, whose Leaderboard panel follows the game's board; the organiser ends the game,
and the final standings and the CSV export match the trades.

Screenshots of each step go under SCREENSHOT_DIR, named after the test. It runs once in CI, on
SQLite: what it proves is the pages and the processes together, not the database.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest
from django.utils import timezone
from playwright.sync_api import Page, expect

from tests.e2e.browser import LiveStack, Pages, unique_username, user_create
from tests.e2e.test_dashboard_browser import READY, UI_TIMEOUT_MS, log_in, wait_until
from trading.models import Account, Fill, Game, GamePlayer, Position
from trading.units import QTY_SCALE

pytestmark = [
    pytest.mark.live,
    pytest.mark.slow,
    pytest.mark.xdist_group("stacks"),  # make test runs chromium and whole-stack runs one at a time
    pytest.mark.backend_neutral,  # the pages over the live stack, not the SQL: CI runs it once
]

STARTING_CASH = Decimal("25000.00")
ANNOUNCEMENT = "Trading is open: good luck."


def create_game(page: Page, name: str) -> str:
    """From the nav to the create form and through it; the invite link from the manage page."""
    page.get_by_role("navigation").get_by_role("link", name="Games").click()
    page.get_by_role("link", name="Create a game").click()
    now = timezone.now()
    page.fill("#id_name", name)
    page.fill("#id_description", "Two players, one bot.")
    # Starts at this minute (already begun: trading opens at once), ends tomorrow.
    page.fill("#id_starts_at", now.strftime("%Y-%m-%dT%H:%M"))
    page.fill("#id_ends_at", (now + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"))
    page.fill("#id_starting_cash", str(STARTING_CASH))
    page.check("input[name=visibility][value=invite_only]")
    page.fill("#id_player_cap", "10")
    page.click("#game-form button[type=submit]")
    expect(page.locator("h1")).to_have_text(f"Manage {name}", timeout=UI_TIMEOUT_MS)
    return page.locator("#invite-link").inner_text().strip()


def join_by_link(page: Page, invite_link: str, name: str) -> None:
    page.goto(invite_link)
    expect(page.locator("h1")).to_have_text(name)
    page.click("#join-game button[type=submit]")
    expect(page.locator("#game-account-number")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.locator("#announcements")).to_contain_text(ANNOUNCEMENT)


def csv_rows(page: Page, url: str) -> list[dict[str, str]]:
    """A CSV the organiser downloads, read with the organiser's session (the page's cookies)."""
    response = page.request.get(url)
    assert response.status == 200, response.text()
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text())))


def test_an_organiser_runs_an_invite_only_game_from_the_pages(
    dashboard_stack: LiveStack, pages: Pages, live_db: None
) -> None:
    organiser, ann, bob = (unique_username(prefix) for prefix in ("teacher", "ann", "bob"))
    for username in (organiser, ann, bob):
        user_create(username)
    name = f"Class {organiser[-4:]}"

    # The organiser creates the game.
    teacher_page = pages.open(name="organiser").page
    log_in(teacher_page, organiser)
    invite_link = create_game(teacher_page, name)
    game = Game.objects.get(name=name)
    assert (game.visibility, game.starting_cash_cents, game.player_cap) == ("invite_only", 2_500_000, 10)
    assert invite_link.endswith(f"/games/join/{game.invite_code}")
    teacher_page.fill("#id_text", ANNOUNCEMENT)
    teacher_page.click("#announce button[type=submit]")
    expect(teacher_page.locator("#announcements")).to_contain_text(ANNOUNCEMENT, timeout=UI_TIMEOUT_MS)
    pages.screenshot(teacher_page, "created", full_page=True)

    # Ann joins by the link and trades from the dashboard on her game account.
    ann_page = pages.open(name="ann").page
    log_in(ann_page, ann)
    join_by_link(ann_page, invite_link, name)
    ann_account = GamePlayer.objects.get(game=game, user__username=ann).account
    ann_page.click("#trade-in-game button[type=submit]")
    ann_page.wait_for_selector(READY, timeout=UI_TIMEOUT_MS)
    expect(ann_page.locator("#account-select")).to_have_value(str(ann_account.pk))
    expect(ann_page.locator("#account [data-field=cash]")).to_have_text("25,000.00", timeout=UI_TIMEOUT_MS)
    symbol = ann_page.locator("#chart-symbol").inner_text()
    ann_page.fill("#ticket-qty", "5")
    ann_page.select_option("#ticket-type", "market")
    ann_page.click("#order-ticket button[type=submit]")
    expect(ann_page.locator("#order-ticket-status")).to_contain_text("Order placed", timeout=UI_TIMEOUT_MS)
    wait_until(lambda: Position.objects.filter(account=ann_account).exists(), what="Ann's fill")
    # On her game account the dashboard's Leaderboard panel is the game's board, not the global one.
    expect(ann_page.locator("#leaderboard-title")).to_have_text(f"Leaderboard: {name}")
    expect(ann_page.locator(f'#leaderboard [data-username="{ann}"]')).to_have_count(1, timeout=UI_TIMEOUT_MS)
    pages.screenshot(ann_page, "ann-traded")

    # Bob joins by the link, makes a key for his game account, and his bot trades with alpaca-py.
    bob_page = pages.open(name="bob").page
    log_in(bob_page, bob)
    join_by_link(bob_page, invite_link, name)
    bob_account = GamePlayer.objects.get(game=game, user__username=bob).account
    bob_page.click("#keys-for-game button[type=submit]")
    expect(bob_page.locator("#keys-account")).to_contain_text(bob_account.account_number)
    bob_page.fill("#id_label", "game bot")
    bob_page.click("form.create-key button[type=submit]")
    key_id = bob_page.locator("#new-key-id").inner_text()
    secret = bob_page.locator("#new-key-secret").inner_text()
    pages.screenshot(bob_page, "bob-key")
    bot = TradingClient(key_id, secret, paper=True, url_override=dashboard_stack.base_url)
    assert Decimal(str(bot.get_account().cash)) == STARTING_CASH
    bot.submit_order(
        MarketOrderRequest(symbol=symbol, qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    wait_until(lambda: Position.objects.filter(account=bob_account).exists(), what="Bob's fill")
    # Bob joined after Ann's dashboard loaded: her page's polling brings him onto its board.
    expect(ann_page.locator(f'#leaderboard [data-username="{bob}"]')).to_have_count(1, timeout=UI_TIMEOUT_MS)
    # Neither player's own account moved.
    assert not Position.objects.filter(
        account__user__username__in=[ann, bob], account__is_default=True
    ).exists()

    # Both are on the game's leaderboard, which the page refreshes by itself.
    teacher_page.goto(f"/games/{game.pk}")
    board = teacher_page.locator("#game-leaderboard")
    for username in (ann, bob):
        expect(board.locator(f'tbody tr[data-username="{username}"]')).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(board).to_have_attribute("data-final", "false")
    pages.screenshot(teacher_page, "live-board", full_page=True)

    # The organiser ends the game: the standings are final, the positions shown.
    teacher_page.goto(f"/games/{game.pk}/manage")
    teacher_page.click("#end-game button[type=submit]")
    expect(teacher_page.locator("#game")).to_have_attribute("data-state", "over", timeout=UI_TIMEOUT_MS)
    # Frozen GAME_FREEZE_GRACE_S after the end; the page polls until then.
    expect(board).to_have_attribute("data-final", "true", timeout=UI_TIMEOUT_MS)
    expect(teacher_page.locator("#leaderboard-title")).to_have_text("Final standings")
    expect(ann_page.locator("#leaderboard-title")).to_have_text(
        f"Leaderboard: {name} (final standings)", timeout=UI_TIMEOUT_MS
    )
    shown = {
        row.get_attribute("data-username"): row.locator("td").all_inner_texts()
        for row in board.locator("tbody tr").all()
    }
    assert set(shown) == {ann, bob}
    positions = teacher_page.locator("#game-positions tbody tr")
    expect(positions).to_have_count(2)
    pages.screenshot(teacher_page, "final", full_page=True)

    # The exports match the trades: every fill, by username, and each player's final equity.
    fills = sorted(
        (username, fill.asset.symbol, fill.side, Decimal(fill.qty) / QTY_SCALE)
        for username, account in ((ann, ann_account), (bob, bob_account))
        for fill in Fill.objects.filter(account=account).select_related("asset")
    )
    assert fills == sorted([(ann, symbol, "buy", Decimal(5)), (bob, symbol, "buy", Decimal(3))])
    trades = csv_rows(teacher_page, f"/v2/games/{game.pk}/trades.csv")
    assert (
        sorted((row["username"], row["symbol"], row["side"], Decimal(row["qty"])) for row in trades) == fills
    )
    assert not any(account.account_number in str(trades) for account in (ann_account, bob_account))
    standings = {row["username"]: row for row in csv_rows(teacher_page, f"/v2/games/{game.pk}/standings.csv")}
    assert set(standings) == {ann, bob}
    implied_prices = []
    for username, account, held in ((ann, ann_account, 5), (bob, bob_account, 3)):
        row = standings[username]
        assert row["status"] == "final"
        assert shown[username][:3] == [row["rank"], username, f"{Decimal(row['equity']):,.2f}"]
        # Equity at the end is the cash the fill left plus the shares at the last price.
        cash = Decimal(Account.objects.get(pk=account.pk).cash_cents).scaleb(-2)
        implied_prices.append((Decimal(row["equity"]) - cash) / held)
    # Both hold the same symbol, valued at the same frozen tick: one price, up to the cent.
    assert abs(implied_prices[0] - implied_prices[1]) < Decimal("0.01"), implied_prices
    assert implied_prices[0] > 0
    for opened in pages.opened:
        assert opened.watch.page_errors == [] and opened.watch.csp_violations == [], opened.name
