"""The beat schedule, in one place. Each entry says when it runs and why.

Run exactly one beat process. A second one (a deploy overlap) duplicates sends, which job runs
unique per (job, slot) absorb for the jobs whose effect must happen once.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Every 30 s: day orders must end at the trading-day boundary; running often keeps an order
    # from outliving its day by more than half a minute, and a run with nothing due is one query.
    "orders-expire": {"task": "jobs.orders_expire", "schedule": 30.0},
    # Every 30 s: a game's open orders are canceled (with their events) once it is over. Until
    # this runs the market refuses to fill them, so the period bounds only how long they show as
    # open; a run with nothing due is one query.
    "games-close-due": {"task": "jobs.games_close_due", "schedule": 30.0},
    # Hourly on the 1st and 2nd (UTC): last month's statements. The month is taken in the trading
    # time zone, which may end hours after UTC midnight, so the first runs on the 1st may still
    # name the month before; the fan-out is unique per month, so repeats cost one query, and the
    # 2nd catches a beat that was down on the 1st.
    "statements-monthly": {
        "task": "jobs.statements_monthly",
        "schedule": crontab(minute=17, hour="*", day_of_month="1,2"),
    },
    # Hourly: ticks, minute bars and job runs past retention. Ticks arrive at ~250/s, so an hour's
    # expired rows (about 900k) take ~180 short batches; rarer runs would mean longer sweeps.
    "retention-cleanup": {"task": "jobs.retention_cleanup", "schedule": crontab(minute=41)},
    # Every 30 s: publish messages written to the outbox while the broker was down. Beat's own
    # sends fail while the broker is down, so this runs as soon as it is back.
    "outbox-drain": {"task": "jobs.outbox_drain", "schedule": 30.0},
    # Every 5 min: re-send runs whose message was lost (queued for longer than a lease, or
    # running past their lease); the broker's own redelivery covers a dead worker's messages.
    "job-runs-recover": {"task": "jobs.job_runs_recover", "schedule": 300.0},
    # Every 4 s: overall and daily leaderboards and every running game's, from one load of every
    # account; games just over get their final standings. Readers recompute a board older than
    # LEADERBOARD_MAX_STALENESS_S (5 s) themselves; this keeps them from paying for it.
    # `expires` drops runs queued behind a busy worker: the next run supersedes them.
    "leaderboard-refresh": {"task": "jobs.leaderboard_refresh", "schedule": 4.0, "options": {"expires": 4.0}},
    # Every 60 s: per-account analytics (returns, volatility, drawdown, Sharpe, allocation).
    "analytics-refresh": {"task": "jobs.analytics_refresh", "schedule": 60.0, "options": {"expires": 60.0}},
    # Every 30 s: per-symbol stats, matching their cache TTL.
    "symbol-stats-refresh": {
        "task": "jobs.symbol_stats_refresh",
        "schedule": 30.0,
        "options": {"expires": 30.0},
    },
}
