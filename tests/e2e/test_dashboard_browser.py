"""The dashboard in Debian's chromium against the live stack (tests/e2e/browser.py): 500 symbols
in the table, the first 200 ticking about once a second each, real gunicorn, daphne and market.

Every test saves a screenshot of its page(s) under SCREENSHOT_DIR (``-FAILED`` on failure). The
page's hooks are the ids and data attributes of templates/dashboard.html (docs/dashboard.md).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from tests.builders import shares
from tests.e2e.browser import (
    PASSWORD,
    PHONE,
    LiveStack,
    OpenedPage,
    Pages,
    PageWatch,
    unique_username,
    user_create,
)
from trading import services
from trading.models import Account, Order, Position, Watchlist

# chromium beside a benchmark run on 2 cores can miss its waits: one worker runs all of them.
pytestmark = [
    pytest.mark.live,
    pytest.mark.slow,
    pytest.mark.xdist_group("stacks"),  # make test runs chromium and whole-stack runs one at a time
    pytest.mark.backend_neutral,  # the pages over the live stack, not the SQL: CI runs these once
]

READY = "#dashboard[data-ready=true]"
MARKET_ROWS = "#market-table [data-symbol]"
# Generous: two cold Django processes and chromium share two cores with the market.
UI_TIMEOUT_MS = 20_000
# A tick's row is written in the animation frame after its message; on a loaded machine a frame
# can come late, so a mutation counts as caused by a message up to this long before it. The quiet
# rows the test compares against never tick at all, so the margin costs the test nothing.
RENDER_LAG_MS = 2_000

# Recorded before the page's own scripts run: every market-data frame the page receives, as
# (arrival time, symbols), from a listener added to each real socket ahead of the page's handler.
RECORD_MARKET_FRAMES = """
(() => {
  const Native = window.WebSocket;
  const frames = [];
  Object.defineProperty(window, "__marketFrames", { value: frames });
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      if (!String(args[0]).includes("/v2/")) return;
      this.addEventListener("message", (event) => {
        let messages;
        try { messages = JSON.parse(event.data); } catch { return; }
        if (!Array.isArray(messages)) return;
        const symbols = messages.filter((m) => m && typeof m.S === "string").map((m) => m.S);
        if (symbols.length) frames.push([performance.now(), symbols]);
      });
    }
  };
})();
"""

OBSERVE_MUTATIONS = """
(selector) => {
  const records = [];
  const observer = new MutationObserver((mutations) => {
    const now = performance.now();
    for (const m of mutations) {
      const element = m.target.nodeType === 1 ? m.target : m.target.parentElement;
      const row = element && element.closest("[data-symbol]");
      const cell = element && element.closest("[data-field]");
      records.push({
        t: now,
        type: m.type,
        symbol: row ? row.getAttribute("data-symbol") : null,
        field: cell ? cell.dataset.field : null,
        attribute: m.attributeName,
        old: m.oldValue,
        now: m.type === "characterData" ? m.target.data : null,
        added: m.addedNodes.length,
        removed: m.removedNodes.length,
      });
    }
  });
  observer.observe(document.querySelector(selector), {
    subtree: true, childList: true, attributes: true, characterData: true,
    attributeOldValue: true, characterDataOldValue: true,
  });
  window.__observed = { records, observer, started: performance.now() };
}
"""

COLLECT_MUTATIONS = """
(selector) => {
  const observed = window.__observed;
  observed.observer.takeRecords();
  observed.observer.disconnect();
  return {
    started: observed.started,
    ended: performance.now(),
    records: observed.records,
    frames: window.__marketFrames.filter(([t]) => t >= observed.started - 3000),
    shown: Array.from(document.querySelectorAll(selector), (row) => row.getAttribute("data-symbol")),
  };
}
"""


# --- Helpers --------------------------------------------------------------------------------------


def log_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """Through the login form, as a person would; lands on the live dashboard."""
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_selector(READY, timeout=UI_TIMEOUT_MS)
    expect(page.locator("#connection-state")).to_have_attribute("data-state", "open", timeout=UI_TIMEOUT_MS)


def wait_until(condition: Callable[[], bool], *, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def money(text: str) -> Decimal:
    return Decimal(text.replace(",", "").replace("$", "").strip())


def market_messages(page: Page) -> int:
    return int(page.evaluate("window.__dashboardPerf.totals.messages"))


def no_horizontal_overflow(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        """() => {
            const root = document.documentElement;
            const wide = Array.from(document.querySelectorAll("body *"))
              .filter((element) => element.getBoundingClientRect().right > root.clientWidth + 1)
              .slice(0, 5)
              .map((element) => `${element.tagName.toLowerCase()}#${element.id}.${element.className}`);
            return {scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, wide};
        }"""
    )
    return result


@pytest.fixture
def trader(live_db: None) -> str:
    username = unique_username("trader")
    user_create(username)
    return username


@pytest.fixture
def dashboard(pages: Pages, trader: str) -> OpenedPage:
    """A trader's dashboard at 1280x800, logged in through the form, streams live."""
    opened = pages.open(name="dashboard")
    opened.page.add_init_script(RECORD_MARKET_FRAMES)
    log_in(opened.page, trader)
    return opened


# --- Tests ------------------------------------------------------------------------------------------


def test_login_first_load_makes_at_most_three_api_calls_then_streams(
    dashboard_stack: LiveStack, pages: Pages, trader: str
) -> None:
    """Property 19: the first load makes at most 3 fetch/XHR calls to /v2/; then only sockets."""
    opened = pages.open()
    page = opened.page
    page.goto("/")  # signed out: the landing page, with a way in
    page.get_by_role("navigation").get_by_role("link", name="Log in").click()
    expect(page).to_have_url(f"{dashboard_stack.base_url}/login")
    page.fill("input[name=username]", trader)
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")
    expect(page.locator(".errorlist")).to_be_visible()
    assert opened.watch.api_calls == []

    page.fill("input[name=username]", trader)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector(READY, timeout=UI_TIMEOUT_MS)
    expect(page.locator("#connection-state")).to_have_attribute("data-state", "open", timeout=UI_TIMEOUT_MS)
    expect(page.locator("#market-count")).to_have_text("500 of 500")
    expect(page.locator(".nav-user")).to_have_text(trader)
    # Prices arrive over the market-data socket.
    wait_until(lambda: market_messages(page) > 0, what="market data")
    first_load = list(opened.watch.api_calls)

    assert len(first_load) <= 3, first_load
    assert any("/v2/dashboard/bootstrap" in call for call in first_load), first_load
    # Ticks keep coming for seconds, and none of them costs a request.
    before = market_messages(page)
    page.wait_for_timeout(3_000)
    assert market_messages(page) > before
    assert opened.watch.api_calls == first_load
    assert opened.watch.page_errors == []
    # The benchmark's baseline renderer is never downloaded by the page people use.
    assert any(url.endswith("/static/js/app.js") for url in opened.watch.scripts), opened.watch.scripts
    assert not [url for url in opened.watch.scripts if url.endswith("/naive-table.js")]


def test_the_naive_baseline_is_imported_only_when_the_page_asks_for_it(
    dashboard_stack: LiveStack, pages: Pages, trader: str
) -> None:
    """``/?renderer=naive`` (benchmark dashboard's baseline) imports naive-table.js and draws the
    whole market with it, under the page's Content-Security-Policy."""
    opened = pages.open(name="naive")
    page = opened.page
    log_in(page, trader)
    assert not [url for url in opened.watch.scripts if url.endswith("/naive-table.js")]

    page.goto("/?renderer=naive")
    page.wait_for_selector(READY, timeout=UI_TIMEOUT_MS)
    expect(page.locator("#market-table table.naive-table")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.locator("#market-table tr[data-symbol]")).to_have_count(len(dashboard_stack.symbols))
    assert len([url for url in opened.watch.scripts if url.endswith("/static/js/naive-table.js")]) == 1
    assert opened.watch.csp_violations == []
    assert opened.watch.page_errors == []


def test_ticks_write_only_the_rows_of_symbols_that_ticked(
    dashboard_stack: LiveStack, dashboard: OpenedPage, pages: Pages
) -> None:
    """Property 16: a price update changes DOM nodes only inside the rows of the symbols it
    carried; rows whose symbols did not tick in the period see no mutation at all."""
    page = dashboard.page
    grid = page.locator("#market-table [role=grid]")
    # Scroll to where ticking symbols give way to quiet ones, so both kinds of row are shown.
    first_row = page.locator(MARKET_ROWS).first.bounding_box()
    assert first_row is not None
    row_height = first_row["height"]
    grid.evaluate("(grid, top) => { grid.scrollTop = top; }", (dashboard_stack.ticking - 10) * row_height)
    page.wait_for_timeout(1_500)  # the new window rendered, earlier flashes over

    page.evaluate(OBSERVE_MUTATIONS, "#market-table")
    page.wait_for_timeout(4_000)
    seen = page.evaluate(COLLECT_MUTATIONS, MARKET_ROWS)
    pages.screenshot(page, "observed")

    records, started, ended = seen["records"], seen["started"], seen["ended"]
    arrivals: dict[str, list[float]] = {}
    for at, symbols in seen["frames"]:
        for symbol in symbols:
            arrivals.setdefault(symbol, []).append(at)

    assert records, "no cell changed in 4 s of ticks"
    outside_rows = [r for r in records if r["symbol"] is None]
    assert outside_rows == [], outside_rows[:5]  # no row added, removed or re-created
    unexplained = [
        r
        for r in records
        if not any(r["t"] - RENDER_LAG_MS <= at <= r["t"] for at in arrivals.get(r["symbol"], []))
    ]
    assert unexplained == [], unexplained[:5]
    rewritten = [r for r in records if r["type"] == "characterData" and r["old"] == r["now"]]
    assert rewritten == [], rewritten[:5]  # only cells whose text changed are written

    shown = set(seen["shown"])
    quiet = {
        s for s in shown if not any(started - RENDER_LAG_MS <= at <= ended for at in arrivals.get(s, []))
    }
    ticked = shown - quiet
    mutated = {r["symbol"] for r in records}
    assert quiet, f"every shown row ticked; nothing to compare against ({sorted(shown)})"
    assert ticked & mutated, "no ticking row was updated"
    assert not (quiet & mutated), sorted(quiet & mutated)
    assert any(r["field"] in ("last", "bid", "ask") and r["type"] == "characterData" for r in records)
    assert dashboard.watch.page_errors == []


def test_a_500_row_table_keeps_only_its_visible_window_in_the_document(
    dashboard: OpenedPage, pages: Pages
) -> None:
    """Property 18: 500 symbols, under ~60 row elements in the DOM wherever the table is scrolled."""
    page = dashboard.page
    grid = page.locator("#market-table [role=grid]")
    expect(page.locator("#market-count")).to_have_text("500 of 500")
    assert page.locator(MARKET_ROWS).count() < 60
    grid.hover()
    counts = []
    for _ in range(12):
        page.mouse.wheel(0, 1_400)
        page.wait_for_timeout(120)
        counts.append(page.locator(MARKET_ROWS).count())
    assert all(0 < count < 60 for count in counts), counts
    assert grid.get_attribute("aria-rowcount") == "501"  # the header row and 500 symbols
    grid.evaluate("(grid) => { grid.scrollTop = grid.scrollHeight; }")
    expect(page.locator('#market-table [data-symbol][aria-rowindex="501"]')).to_be_visible()
    assert page.locator(MARKET_ROWS).count() < 60
    pages.screenshot(page, "scrolled-to-end")


def test_market_order_from_the_ticket_updates_positions_and_cash(
    dashboard: OpenedPage, trader: str, live_db: None
) -> None:
    page = dashboard.page
    cash = page.locator("#account [data-field=cash]")
    expect(cash).to_have_text("100,000.00")
    symbol = page.locator("#chart-symbol").inner_text()  # the ticket follows the charted symbol
    expect(page.locator("#ticket-symbol")).to_have_value(symbol)
    page.fill("#ticket-qty", "7")
    page.select_option("#ticket-type", "market")
    page.click("#order-ticket button[type=submit]")

    expect(page.locator("#order-ticket-status")).to_contain_text("Order placed", timeout=UI_TIMEOUT_MS)
    position_row = page.locator(f'#positions [data-symbol="{symbol}"]')
    expect(position_row.locator("[data-field=qty]")).to_have_text("7", timeout=UI_TIMEOUT_MS)
    expect(page.locator("#positions [data-count]")).to_have_text("1")
    account = Account.objects.get(user__username=trader)
    position = Position.objects.get(account=account, asset__symbol=symbol)
    assert position.qty == shares(7)
    expect(cash).to_have_text(f"{Decimal(account.cash_cents) / 100:,.2f}", timeout=UI_TIMEOUT_MS)
    assert money(cash.inner_text()) < Decimal("100000")
    expect(
        page.locator(f'#order-history [data-order-id] [data-field=symbol]:text-is("{symbol}")')
    ).to_have_count(1)
    expect(page.locator("#fills [data-fill-id]")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    assert dashboard.watch.page_errors == []


def test_switching_accounts_reloads_this_tab_and_reconnects_the_sessions_other_tabs(
    pages: Pages, trader: str, live_db: None
) -> None:
    """The switcher shows for a user with two accounts; switching in one tab shows the other
    account there, and the same session's other tab, whose account socket the server closed,
    reconnects and resyncs onto it. Orders from the ticket then go to the selected account."""
    default = Account.objects.get(user__username=trader)
    further = services.account_create(user=default.user, cash_cents=2_000_000)
    opened = pages.open(name="switching")
    page = opened.page
    log_in(page, trader)
    other = page.context.new_page()
    other.goto("/")
    other.wait_for_selector(READY, timeout=UI_TIMEOUT_MS)
    for tab in (page, other):
        expect(tab.locator("#account [data-field=cash]")).to_have_text("100,000.00")
        expect(tab.locator("#account-select")).to_have_value(str(default.pk))

    page.select_option("#account-select", str(further.pk))
    page.click("#account-switcher button[type=submit]")
    page.wait_for_selector(READY, timeout=UI_TIMEOUT_MS)
    expect(page.locator("#account-select")).to_have_value(str(further.pk))
    for tab in (page, other):
        expect(tab.locator("#account [data-field=cash]")).to_have_text("20,000.00", timeout=UI_TIMEOUT_MS)
    expect(other.locator("#connection-state")).to_have_attribute("data-state", "open", timeout=UI_TIMEOUT_MS)
    pages.screenshot(page, "switched")

    page.fill("#ticket-qty", "3")
    page.select_option("#ticket-type", "market")
    page.click("#order-ticket button[type=submit]")
    expect(page.locator("#order-ticket-status")).to_contain_text("Order placed", timeout=UI_TIMEOUT_MS)
    wait_until(lambda: Position.objects.filter(account=further).exists(), what="the order's fill")
    assert not Position.objects.filter(account=default).exists()
    assert opened.watch.page_errors == []


def test_a_limit_order_far_from_the_market_rests_in_open_orders_and_cancels(
    dashboard: OpenedPage, pages: Pages, trader: str, live_db: None
) -> None:
    page = dashboard.page
    symbol = page.locator("#chart-symbol").inner_text()
    page.fill("#ticket-qty", "3")
    page.select_option("#ticket-type", "limit")
    page.fill("#ticket-limit", "1.00")  # far below any seeded price: it rests
    page.click("#order-ticket button[type=submit]")

    row = page.locator("#open-orders [data-order-id]")
    expect(row).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(row.locator("[data-field=symbol]")).to_have_text(symbol)
    expect(row.locator("[data-field=price]")).to_have_text("lmt 1.00")
    order_id = str(row.get_attribute("data-order-id"))
    order = Order.objects.get(pk=order_id)
    assert (order.account.user.username, order.status) == (trader, "new")
    pages.screenshot(page, "open")

    row.locator("button[data-action=cancel]").click()
    expect(page.locator("#open-orders [data-order-id]")).to_have_count(0, timeout=UI_TIMEOUT_MS)
    wait_until(lambda: Order.objects.get(pk=order_id).status == "canceled", what="the cancel to be stored")
    history_status = page.locator(f'#order-history [data-order-id="{order_id}"] [data-field=status]')
    expect(history_status).to_have_text("canceled", timeout=UI_TIMEOUT_MS)
    assert dashboard.watch.page_errors == []


def test_keyboard_moves_through_the_market_charts_and_stars_a_symbol(
    dashboard: OpenedPage, trader: str, live_db: None
) -> None:
    page = dashboard.page
    grid = page.locator("#market-table [role=grid]")
    third = page.locator('#market-table [data-symbol][aria-rowindex="4"]').get_attribute("data-symbol")
    assert third
    grid.focus()

    def active_row() -> tuple[str | None, str | None]:
        """(aria-rowindex, symbol) of the grid's active row."""
        row = page.locator(f"#{grid.get_attribute('aria-activedescendant')}")
        return row.get_attribute("aria-rowindex"), row.get_attribute("data-symbol")

    for _ in range(3):
        page.keyboard.press("ArrowDown")
    assert active_row() == ("4", third)
    page.keyboard.press("Enter")
    expect(page.locator("#chart-symbol")).to_have_text(third)
    expect(page.locator("#ticket-symbol")).to_have_value(third)

    page.keyboard.press("Space")
    star = page.locator(f'#market-table [data-symbol="{third}"] button.star')
    expect(star).to_have_attribute("aria-pressed", "true")
    wait_until(
        lambda: Watchlist.objects.filter(
            account__user__username=trader, entries__asset__symbol=third
        ).exists(),
        what="the star to reach the watchlist",
    )

    page.keyboard.press("End")
    assert active_row()[0] == "501"
    expect(page.locator('#market-table [data-symbol][aria-rowindex="501"]')).to_be_visible()
    assert page.locator(MARKET_ROWS).count() < 60
    page.keyboard.press("Home")
    assert active_row()[0] == "2"
    page.keyboard.press("/")  # the search shortcut
    expect(page.locator("#market-search")).to_be_focused()
    page.keyboard.type(third)
    expect(page.locator('#market-table [data-symbol][aria-rowindex="2"]')).to_have_attribute(
        "data-symbol", third
    )
    expect(page.locator("#market-count")).not_to_have_text("500 of 500")
    assert dashboard.watch.page_errors == []


def test_phone_sized_viewport_has_no_horizontal_overflow(pages: Pages, trader: str) -> None:
    opened = pages.open(viewport=PHONE, name="phone", is_mobile=True, has_touch=True)
    page = opened.page
    log_in(page, trader)
    expect(page.locator("#market-table [data-symbol]").first).to_be_visible()
    layout = no_horizontal_overflow(page)
    pages.screenshot(page, "full-page", full_page=True)
    assert layout["scrollWidth"] <= layout["clientWidth"], layout
    assert opened.watch.page_errors == []


def test_sign_up_then_watch_prices_move(dashboard_stack: LiveStack, pages: Pages) -> None:
    opened = pages.open(name="signup")
    page = opened.page
    page.goto("/")
    page.goto("/signup")
    username = unique_username("newcomer")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "a-long-enough-passphrase-9")
    page.fill("input[name=password_confirm]", "a-long-enough-passphrase-9")
    page.click("button[type=submit]")
    page.wait_for_selector(READY, timeout=UI_TIMEOUT_MS)
    expect(page.locator(".nav-user")).to_have_text(username)
    expect(page.locator("#account [data-field=cash]")).to_have_text("100,000.00")

    # The first row ticks about once a second: its last price is rewritten by the stream.
    ticking = dashboard_stack.ticking_symbols[0]
    last = page.locator(f'#market-table [data-symbol="{ticking}"] [data-field=last]')
    seen = {last.inner_text()}

    def moved_twice() -> bool:
        seen.add(last.inner_text())
        return len(seen) >= 3

    wait_until(moved_twice, what=f"{ticking}'s price to move")
    assert opened.watch.page_errors == []


def csp_console_errors(watch: PageWatch) -> list[str]:
    return [error for error in watch.console_errors if "Content Security Policy" in error]


def test_login_dashboard_and_keys_pages_break_no_content_security_policy(
    dashboard_stack: LiveStack, pages: Pages, trader: str
) -> None:
    """The pages' policy (no inline script or style) and the pages agree: logging in, a live
    dashboard with its chart, and the API keys page with its copy button raise no violation."""
    opened = pages.open(name="csp")
    page = opened.page
    log_in(page, trader)  # the login page, then the dashboard with its sockets open
    expect(page.locator("#chart canvas").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    wait_until(lambda: market_messages(page) > 0, what="market data")
    page.locator(f'#market-table [data-symbol="{dashboard_stack.ticking_symbols[1]}"]').click()
    expect(page.locator("#chart-symbol")).to_have_text(dashboard_stack.ticking_symbols[1])

    page.goto("/keys")
    page.fill("input[name=label]", "csp check")
    page.locator("form.create-key button[type=submit]").click()
    copy = page.locator("button.copy").first
    copy.click()
    # The clipboard may be refused to a headless browser; either answer means the script ran.
    expect(copy).to_have_text(re.compile(r"^(Copied|Selected: press Ctrl\+C)$"))

    assert opened.watch.csp_violations == []
    assert csp_console_errors(opened.watch) == []
    assert opened.watch.page_errors == []


# What the API docs' policy still blocks, by design (templates/api_docs/redoc.html): the stylesheet
# Redoc's bundle inserts before it has the nonce, and the Redocly logo from their CDN.
REDOC_BLOCKED = {
    ("style-src-elem", "inline", "redoc.standalone.js"),
    ("img-src", "https://cdn.redoc.ly/redoc/logo-mini.svg", ""),
}


def test_api_docs_and_the_admin_work_under_the_policy(
    dashboard_stack: LiveStack, pages: Pages, live_db: None
) -> None:
    operator = unique_username("operator")
    user_create(operator)
    get_user_model().objects.filter(username=operator).update(is_staff=True, is_superuser=True)
    opened = pages.open(name="docs-admin")
    page = opened.page

    page.goto("/v2/docs")  # Swagger UI: its start-up script is a file (docs?script)
    expect(page.locator(".opblock").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.goto("/v2/redoc")  # Redoc: a nonce for its script and its styles, a blob: worker for search
    page.get_by_placeholder("Search...").fill("leaderboard")
    expect(page.locator("[data-role='search:results'] li").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    redoc = [v for v in opened.watch.csp_violations if v["page"] == "/v2/redoc"]
    assert {
        (v["directive"], v["blocked"], "redoc.standalone.js" if "redoc" in v["source"] else "") for v in redoc
    } <= REDOC_BLOCKED, redoc

    page.goto("/admin/login/")
    page.fill("#id_username", operator)
    page.fill("#id_password", PASSWORD)
    page.locator("input[type=submit]").click()
    page.goto("/admin/trading/account/")
    page.locator("#action-toggle").check()  # the admin's own scripts select every row
    expect(page.locator("input.action-select").first).to_be_checked()
    expect(page.locator(".action-counter")).to_contain_text("selected")

    others = [v for v in opened.watch.csp_violations if v["page"] != "/v2/redoc"]
    assert others == []
    assert opened.watch.page_errors == []


def test_page_shows_reconnecting_and_recovers_when_daphne_restarts(
    dashboard_stack: LiveStack, dashboard: OpenedPage, pages: Pages
) -> None:
    """The connection state is visible; after the WebSocket server comes back on the same port
    the page reconnects, resumes from a fresh snapshot and ticks flow again."""
    page = dashboard.page
    state = page.locator("#connection-state")
    expect(state).to_have_attribute("data-state", "open")
    try:
        dashboard_stack.stop_daphne()
        expect(state).to_have_attribute("data-state", "reconnecting", timeout=UI_TIMEOUT_MS)
        expect(state).to_contain_text("Reconnecting")
        pages.screenshot(page, "reconnecting")
        resyncs = page.evaluate("window.__dashboard.resyncs")
    finally:
        dashboard_stack.start_daphne()
    expect(state).to_have_attribute("data-state", "open", timeout=30_000)
    expect(state).to_have_text("Live")
    wait_until(
        lambda: page.evaluate("window.__dashboard.resyncs") > resyncs, what="a resync after reconnecting"
    )
    before = market_messages(page)
    wait_until(lambda: market_messages(page) > before + 50, what="ticks after the restart")
    assert dashboard.watch.page_errors == []
