"""Settings, all read from the environment (see the README's Configuration table for defaults)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import environ

from config.embedded_redis import embedded_redis_socket

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
if (BASE_DIR / ".env").exists():
    env.read_env(str(BASE_DIR / ".env"))

VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _local_secret_key() -> str:
    # A development key that survives restarts, so API-key HMACs and sessions stay valid.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


# --- Core -----------------------------------------------------------------------------------
SECRET_KEY = env.str("SECRET_KEY", default="") or _local_secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Reverse proxies (addresses or networks) whose X-Forwarded-For names the client; every limit per
# client address counts by it (config/client_address.py). Empty: the connection's peer is the client.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "channels",
    "trading",
    "realtime",
    "analytics",
    "jobs",
    "benchmarks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After whitenoise, which answers static files itself: a CSP on a script or stylesheet does nothing.
    "trading.page_security.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# The REST API's stack under gunicorn (config/wsgi.py) is MIDDLEWARE without these, each of which
# does nothing under /v2/; any other middleware reaches the API too. Host checks, security headers,
# sessions and request.user stay. The two HTML pages under /v2/, the API docs, take the full stack.
API_MIDDLEWARE_SKIPPED = {
    "whitenoise.middleware.WhiteNoiseMiddleware": "serves static files, and none lives under /v2/",
    "trading.page_security.ContentSecurityPolicyMiddleware": (
        "the pages' Content-Security-Policy (django-csp), page-only: a policy is for what a browser "
        "renders, and the API answers JSON"
    ),
    "django.middleware.csrf.CsrfViewMiddleware": (
        "every /v2/ view is a DRF view, which it only marks exempt; DRF runs Django's CSRF check "
        "itself for session callers"
    ),
    "django.contrib.messages.middleware.MessageMiddleware": "the API sends no flash messages",
}
API_MIDDLEWARE = [name for name in MIDDLEWARE if name not in API_MIDDLEWARE_SKIPPED]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"
# Alpaca clients never follow redirects, so no slash-appending redirects anywhere.
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "trading.context_processors.signup_mode",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DB_CONNECT_TIMEOUT_S = 2
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE takes the write lock at BEGIN, so concurrent writers queue on the busy
        # timeout instead of failing with "database is locked" when a read lock upgrades.
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests run real processes against the test database, so it must be a file, not :memory:;
    # one per test process, so two test runs on one checkout cannot drop each other's database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test_db_{os.getpid()}.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A server that does not answer (host unreachable, hung) fails a connection attempt after
    # this many seconds instead of the OS's minutes, so requests answer 503 instead of hanging
    # (libpq and psycopg take 2 s as their shortest timeout).
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", DB_CONNECT_TIMEOUT_S)
# Reused connections: opening one per request (and, on SQLite, re-running the WAL pragma) was
# the largest cost of a cached API read under gunicorn.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis (cache, channel layer, broker, fan-out) ------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
EMBEDDED_REDIS = not REDIS_URL
if EMBEDDED_REDIS:
    _socket = embedded_redis_socket(VAR_DIR)
    REDIS_URL = f"unix://{_socket}?db=0"
    CELERY_BROKER_URL = f"redis+socket://{_socket}"
else:
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)

# Bounded pools that wait briefly, then fail into the degraded path instead of growing.
REDIS_POOL_MAX_CONNECTIONS = env.int("REDIS_POOL_MAX_CONNECTIONS", default=50)
REDIS_POOL_TIMEOUT = env.float("REDIS_POOL_TIMEOUT", default=1.0)
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=2.0)

CACHES: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="sim"),
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool",
            "CONNECTION_POOL_KWARGS": {
                "max_connections": REDIS_POOL_MAX_CONNECTIONS,
                "timeout": REDIS_POOL_TIMEOUT,
            },
            "SOCKET_CONNECT_TIMEOUT": REDIS_SOCKET_TIMEOUT,
            "SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT,
            # A Redis outage degrades cache reads to misses (the database answers) instead of 500s.
            "IGNORE_EXCEPTIONS": True,
        },
    }
}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": env.str("CHANNELS_PREFIX", default="sim:ch")},
    }
}

CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"

# --- Auth, sessions, static ------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/login"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
# whitenoise warns on every start when the directory is missing (a fresh VAR_DIR before collectstatic).
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_ROOT = VAR_DIR / "media"
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")

# --- REST API ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "trading.api.authentication.APIKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["trading.api.parsers.BoundedJSONParser"],
    "EXCEPTION_HANDLER": "trading.api.errors.alpaca_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "trading.api.schema.ApiSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Market simulator API (Alpaca Trading v2 and Market Data v2 compatible)",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Simulation and trading -------------------------------------------------------------------
# Money is integer cents; see trading/units.py.
ACCOUNT_STARTING_CASH = env.str("ACCOUNT_STARTING_CASH", default="100000.00")
ACCOUNT_SELF_RESET = env.bool("ACCOUNT_SELF_RESET", default=True)
SHORT_SELLING_DEFAULT = env.bool("SHORT_SELLING_DEFAULT", default=False)
TRADING_TIMEZONE = env.str("TRADING_TIMEZONE", default="America/New_York")
# "always": the market never closes and a trading day runs midnight to midnight TRADING_TIMEZONE;
# "xnys": real NYSE hours, holidays and early closes from exchange-calendars.
MARKET_HOURS = env.str("MARKET_HOURS", default="always")
# Commissions (default zero): a flat fee per order plus a fee per share in hundredths of a cent.
COMMISSION_PER_ORDER_CENTS = env.int("COMMISSION_PER_ORDER_CENTS", default=0)
COMMISSION_PER_SHARE_CENTI_CENTS = env.int("COMMISSION_PER_SHARE_CENTI_CENTS", default=0)
COMMISSION_MINIMUM_CENTS = env.int("COMMISSION_MINIMUM_CENTS", default=0)
# Largest single order, a guard against typos and integer overflow.
ORDER_MAX_QTY = env.int("ORDER_MAX_QTY", default=1_000_000)
# Keyset pages: Alpaca's default and maximum for market data.
HISTORY_PAGE_DEFAULT = env.int("HISTORY_PAGE_DEFAULT", default=1000)
HISTORY_PAGE_MAX = env.int("HISTORY_PAGE_MAX", default=10000)
API_KEY_CACHE_SECONDS = env.int("API_KEY_CACHE_SECONDS", default=30)
# Redis hash the market process writes the latest quote per symbol to.
LATEST_QUOTES_KEY = env.str("LATEST_QUOTES_KEY", default="sim:quotes:latest")
ORDER_EVENTS_CHANNEL = env.str("ORDER_EVENTS_CHANNEL", default="sim:orders:events")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django_redis": {"level": "ERROR"}},
}

# --- Real-time market (run_market) and fan-out -------------------------------------------------
# One Redis pub/sub message per batch window (realtime/wire.py).
MARKET_WINDOWS_CHANNEL = env.str("MARKET_WINDOWS_CHANNEL", default="sim:market:windows")
# Batch window: the market publishes and each stream connection gets at most one frame per window.
STREAM_BATCH_WINDOW_MS = env.int("STREAM_BATCH_WINDOW_MS", default=100)

# --- Jobs ---------------------------------------------------------------------------------------
# Publishing gives up after about a second (the pool bound of DESIGN 5a), so a request whose
# enqueue fails writes an outbox row instead of hanging; beat drains the outbox.
CELERY_BROKER_POOL_LIMIT = REDIS_POOL_MAX_CONNECTIONS
CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_SOCKET_TIMEOUT
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
# A message a worker took and never acknowledged (the worker died) is delivered again after the
# visibility timeout. It must exceed the longest retry countdown (JOB_RETRY_CAP_SECONDS), or a
# countdown still waiting in a live worker is delivered twice (harmless, only wasteful: job runs
# make effects exactly-once). Tests shorten it, and the restore sweep with it, to see a redelivery.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("JOB_VISIBILITY_TIMEOUT_SECONDS", default=3600),
    "unacked_restore_interval": env.int("JOB_UNACKED_RESTORE_INTERVAL_SECONDS", default=10),
    "unacked_restore_throttle": env.int("JOB_UNACKED_RESTORE_THROTTLE", default=10),
    "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
# Retries of transient failures: full jitter under base * 2^attempt, capped (jobs/retry.py).
JOB_RETRY_BASE_SECONDS = env.float("JOB_RETRY_BASE_SECONDS", default=2.0)
JOB_RETRY_CAP_SECONDS = env.float("JOB_RETRY_CAP_SECONDS", default=600.0)
JOB_MAX_RETRIES = env.int("JOB_MAX_RETRIES", default=8)
# A claimed job run whose worker vanished may be claimed again after this; longer than any job.
JOB_LEASE_SECONDS = env.int("JOB_LEASE_SECONDS", default=300)
OUTBOX_DRAIN_BATCH = env.int("OUTBOX_DRAIN_BATCH", default=500)
# Retention (DESIGN 5a). Raw ticks are the bulk of the database: a day on SQLite, a week on PostgreSQL.
TICK_RETENTION_HOURS = env.int(
    "TICK_RETENTION_HOURS", default=24 if DATABASES["default"]["ENGINE"].endswith("sqlite3") else 24 * 7
)
MINUTE_BAR_RETENTION_DAYS = env.int("MINUTE_BAR_RETENTION_DAYS", default=90)
JOB_RUN_RETENTION_DAYS = env.int("JOB_RUN_RETENTION_DAYS", default=30)
# Rows per delete transaction: short transactions, so cleanup never holds a lock for long.
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=5000)
# Test hook only: the statement job sleeps this long after claiming, so a test can kill its worker.
JOB_TEST_STATEMENT_HOLD_SECONDS = env.float("JOB_TEST_STATEMENT_HOLD_SECONDS", default=0.0)

# --- Market process ---
# run_market: the simulator, the tick writer and the resting-order engine (realtime/market.py).
# Each symbol trades on average once per this many seconds (500 symbols: ~250 ticks/s).
MARKET_TICK_INTERVAL_S = env.float("MARKET_TICK_INTERVAL_S", default=2.0)
# How many tradable symbols to simulate (0: all tradable assets).
MARKET_SYMBOLS = env.int("MARKET_SYMBOLS", default=0)
# Seed of the price model: the same seed and the same stored state give the same ticks.
MARKET_SEED = env.int("MARKET_SEED", default=42)
# Ticks of recent history kept in memory per symbol (Property 21).
MARKET_RING_CAPACITY = env.int("MARKET_RING_CAPACITY", default=1000)
# Write-rate limit of the tick writer (0: unlimited). A window is one transaction.
MARKET_WRITE_MAX_ROWS_PER_S = env.float("MARKET_WRITE_MAX_ROWS_PER_S", default=50_000)
MARKET_WRITE_MAX_TXN_PER_S = env.float("MARKET_WRITE_MAX_TXN_PER_S", default=50)
# Windows queued between the simulator and the writer; when full the simulator waits.
MARKET_QUEUE_MAX_WINDOWS = env.int("MARKET_QUEUE_MAX_WINDOWS", default=50)
# How often the market re-reads operator halts, and how often it logs its throughput.
MARKET_HALT_POLL_S = env.float("MARKET_HALT_POLL_S", default=2.0)
MARKET_LOG_INTERVAL_S = env.float("MARKET_LOG_INTERVAL_S", default=10.0)

# --- Analytics, caching, limits ---
# The one table of cache TTLs, in seconds per data type; e.g. CACHE_TTLS="leaderboard=3,assets=600"
# overrides single entries. L1 (in-process) copies live at most CACHE_L1_MAX_SECONDS, the bound
# that holds even when an invalidation message is lost (DESIGN 5a, Property 34).
CACHE_TTLS: dict[str, float] = {
    "leaderboard": 5.0,
    "analytics": 60.0,
    "symbol_stats": 30.0,
    "assets": 300.0,
    **env.dict("CACHE_TTLS", cast={"value": float}, default={}),
}
CACHE_ENABLED = env.bool("CACHE_ENABLED", default=True)
CACHE_L1_MAX_SECONDS = env.float("CACHE_L1_MAX_SECONDS", default=1.0)
CACHE_L1_MAX_ENTRIES = env.int("CACHE_L1_MAX_ENTRIES", default=2048)
# Stampede lock: held at most this long by one recomputing process; others wait up to the wait.
CACHE_LOCK_SECONDS = env.float("CACHE_LOCK_SECONDS", default=10.0)
CACHE_LOCK_WAIT_SECONDS = env.float("CACHE_LOCK_WAIT_SECONDS", default=2.0)
# After a Redis error the cache reads the database directly for this long before trying again.
CACHE_REDIS_RETRY_SECONDS = env.float("CACHE_REDIS_RETRY_SECONDS", default=1.0)
CACHE_INVALIDATION_CHANNEL = env.str("CACHE_INVALIDATION_CHANNEL", default="sim:cache:invalidate")
# A leaderboard older than this when read is recomputed before it is served (Property 11).
LEADERBOARD_MAX_STALENESS_S = env.float("LEADERBOARD_MAX_STALENESS_S", default=5.0)
LEADERBOARD_LIMIT_DEFAULT = env.int("LEADERBOARD_LIMIT_DEFAULT", default=50)
LEADERBOARD_LIMIT_MAX = env.int("LEADERBOARD_LIMIT_MAX", default=500)
# Annual risk-free rate for Sharpe ratios (0.04 = 4 %).
ANALYTICS_RISK_FREE_RATE = env.float("ANALYTICS_RISK_FREE_RATE", default=0.0)
# Per user / API key and endpoint class, exact over any sliding window (trading/api/throttling.py);
# e.g. RATE_LIMITS="orders=100/min,read=20/s" overrides single entries.
RATE_LIMITS: dict[str, str] = {
    "orders": "200/min",
    "write": "200/min",
    "read": "1000/min",
    "market_data": "1000/min",
    "anon": "300/min",
    **env.dict("RATE_LIMITS", default={}),
}
RATE_LIMITS_ENABLED = env.bool("RATE_LIMITS_ENABLED", default=True)
RATE_LIMIT_KEY_PREFIX = env.str("RATE_LIMIT_KEY_PREFIX", default="sim:rl")
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = ["trading.api.throttling.EndpointRateThrottle"]
# Password guessing: attempts per username and client address, and per address over all names.
LOGIN_RATE_LIMIT = env.str("LOGIN_RATE_LIMIT", default="5/15min")
LOGIN_IP_RATE_LIMIT = env.str("LOGIN_IP_RATE_LIMIT", default="50/15min")
AUTHENTICATION_BACKENDS = ["trading.api.throttling.LoginThrottleBackend"]
# Benchmark-only: the /v2/_bench/ping floor view and an X-DB-Queries header on every response.
BENCHMARK_ENDPOINTS = env.bool("BENCHMARK_ENDPOINTS", default=False)
if BENCHMARK_ENDPOINTS:
    MIDDLEWARE = ["analytics.middleware.QueryCountMiddleware", *MIDDLEWARE]
    API_MIDDLEWARE = [name for name in MIDDLEWARE if name not in API_MIDDLEWARE_SKIPPED]

# --- Streams ---
# WebSocket stream limits (realtime/consumers.py, realtime/fanout.py); see README "Streams".
STREAM_FEEDS = env.list("STREAM_FEEDS", default=["iex", "sip", "test"])
STREAM_AUTH_TIMEOUT_S = env.float("STREAM_AUTH_TIMEOUT_S", default=10.0)
STREAM_MAX_SYMBOLS = env.int("STREAM_MAX_SYMBOLS", default=5000)
# Symbols summed over all of one user's market-data connections (all its keys and sessions).
STREAM_MAX_SYMBOLS_PER_USER = env.int("STREAM_MAX_SYMBOLS_PER_USER", default=10_000)
STREAM_MAX_CONNECTIONS_PER_KEY = env.int("STREAM_MAX_CONNECTIONS_PER_KEY", default=5)
# A data frame's payload never exceeds this; a window with more is split into several frames.
STREAM_MAX_FRAME_BYTES = env.int("STREAM_MAX_FRAME_BYTES", default=64 * 1024)
# alpaca-py sends its whole subscription in one message (~6 bytes per symbol and channel).
STREAM_MAX_INBOUND_BYTES = env.int("STREAM_MAX_INBOUND_BYTES", default=256 * 1024)
STREAM_INBOUND_RATE = env.float("STREAM_INBOUND_RATE", default=20.0)
STREAM_INBOUND_BURST = env.float("STREAM_INBOUND_BURST", default=50.0)
# Back-pressure: unsent bytes in a socket's server-side buffer before it counts as not draining,
# windows queued before conflating, and windows a stalled client may fall behind before 407.
STREAM_SEND_BUFFER_BYTES = env.int("STREAM_SEND_BUFFER_BYTES", default=256 * 1024)
STREAM_OUTBOX_HIGH_WATER = env.int("STREAM_OUTBOX_HIGH_WATER", default=10)
STREAM_OUTBOX_MAX_FRAMES = env.int("STREAM_OUTBOX_MAX_FRAMES", default=100)
STREAM_AUTH_FAILURES_MAX = env.int("STREAM_AUTH_FAILURES_MAX", default=10)
STREAM_AUTH_FAILURES_WINDOW_S = env.float("STREAM_AUTH_FAILURES_WINDOW_S", default=60.0)
STREAM_CONNECTION_TTL_S = env.float("STREAM_CONNECTION_TTL_S", default=60.0)
STREAM_ORDER_EVENT_QUEUE = env.int("STREAM_ORDER_EVENT_QUEUE", default=10_000)
STREAM_REDIS_PREFIX = env.str("STREAM_REDIS_PREFIX", default="sim:ws")
STREAM_REDIS_CLIENT_NAME = env.str("STREAM_REDIS_CLIENT_NAME", default="sim-ws")
# Revoked stream credentials (trading/events.py): every web process closes the sockets holding them.
STREAM_REVOCATIONS_CHANNEL = env.str("STREAM_REVOCATIONS_CHANNEL", default="sim:ws:revocations")

# --- Dashboard static files ---
# Browser libraries come from the npm registry (package.json; `make` runs `npm ci`) and are served
# from node_modules under static/vendor/, never copied into the repository; the dashboard's import
# map points at them. Before `npm ci` the directories are missing and Django warns (staticfiles.W004).
# Prefixed entries are (prefix, directory) pairs, which the plain Path list above does not admit.
DASHBOARD_VENDOR_STATIC_DIRS: list[Any] = [
    ("vendor/lightweight-charts", BASE_DIR / "node_modules/lightweight-charts/dist"),
    # lightweight-charts' ES module imports this by its bare name.
    ("vendor/fancy-canvas", BASE_DIR / "node_modules/fancy-canvas"),
]
STATICFILES_DIRS += DASHBOARD_VENDOR_STATIC_DIRS

# --- Dashboard pages, sign-up and the dashboard's endpoints ---
from django.core.exceptions import ImproperlyConfigured  # noqa: E402

LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"
# Who may create an account at /signup: "open" (anyone), "invite" (whoever knows
# SIGNUP_INVITE_CODE) or "closed" (operators create users in the admin).
SIGNUP_MODE = env.str("SIGNUP_MODE", default="open").strip().lower()
SIGNUP_INVITE_CODE = env.str("SIGNUP_INVITE_CODE", default="")
# Accounts one client address may open, so a script cannot fill the leaderboard with accounts.
SIGNUP_IP_RATE_LIMIT = env.str("SIGNUP_IP_RATE_LIMIT", default="10/hour")
if SIGNUP_MODE not in {"open", "invite", "closed"}:
    raise ImproperlyConfigured(f"SIGNUP_MODE must be open, invite or closed, not {SIGNUP_MODE!r}")
if SIGNUP_MODE == "invite" and not SIGNUP_INVITE_CODE:
    raise ImproperlyConfigured("SIGNUP_MODE=invite needs SIGNUP_INVITE_CODE")
# Where browsers and bots reach the WebSocket streams, e.g. "wss://sim.example.com" behind a proxy;
# empty: the request's host name on WS_PORT (daphne's port under `make run`).
STREAM_PUBLIC_URL = env.str("STREAM_PUBLIC_URL", default="").rstrip("/")
WS_PORT = env.int("WS_PORT", default=8001)
# gunicorn's port under `make run`: the pages' own origin, allowed to open the WebSocket streams.
HTTP_PORT = env.int("HTTP_PORT", default=8000)
# How often the dashboard page reports its rendering figures to POST /v2/metrics/frontend.
DASHBOARD_PERF_REPORT_INTERVAL_S = env.float("DASHBOARD_PERF_REPORT_INTERVAL_S", default=30.0)
# The bootstrap's market table (every active asset with prices and a sparkline) is shared by all
# users; prices move every couple of seconds and the page follows them over the stream anyway.
CACHE_TTLS = {"dashboard_assets": 2.0, **CACHE_TTLS}
# Monitoring samples (the dashboard's frontend performance reports among them) older than this are
# deleted by the retention cleanup.
MONITORING_SAMPLE_RETENTION_DAYS = env.int("MONITORING_SAMPLE_RETENTION_DAYS", default=14)

# --- Real-time: the dashboard channel and leaderboard changes (realtime/fanout.py) ---
# The leaderboard job publishes one message here when a refresh changed the top of the overall
# board (analytics/events.py); every web process relays the board to its dashboard sockets.
LEADERBOARD_EVENTS_CHANNEL = env.str("LEADERBOARD_EVENTS_CHANNEL", default="sim:leaderboard:events")
# How many ranks count as "the board" for a change, and how many the dashboard is sent
# (the body of GET /v2/leaderboard?limit=<this>).
DASHBOARD_LEADERBOARD_LIMIT = env.int("DASHBOARD_LEADERBOARD_LIMIT", default=20)

# --- Retention of analytics rows (registered in analytics/apps.py) ---
# Account equity per trading day (analytics.AccountEquityDay): a row per account and day, the
# series returns over periods are computed from, so a year's return and a year-to-date one need
# more than 366 days; 400 leaves a margin. Never taken below the 90 days the analytics read.
EQUITY_DAY_RETENTION_DAYS = env.int("EQUITY_DAY_RETENTION_DAYS", default=400)

# --- Real-time: window delivery to stream sockets (realtime/fanout.py) ---
# The young-generation threshold of Python's cyclic garbage collector in a process serving
# streams, raised (never lowered) when its fan-out starts. At the default 700, each market window
# (a few thousand short-lived objects) set off collections that promoted the window in flight
# to the old generation, and every few seconds a full collection walked the ~100 objects of each
# of 1,000 connections: 150-250 ms pauses, the tick-to-client p99. 0 keeps Python's default.
STREAM_GC_GEN0_THRESHOLD = env.int("STREAM_GC_GEN0_THRESHOLD", default=20_000)

# --- API: content negotiation (trading/api/negotiation.py) ---
# Every response is the view's first renderer's (JSON for the API), whatever Accept says, as
# Alpaca answers; DRF's negotiation cost ~10% of a cached read for a known outcome.
REST_FRAMEWORK["DEFAULT_CONTENT_NEGOTIATION_CLASS"] = "trading.api.negotiation.FirstRendererNegotiation"

# --- Pages: flash messages ---
# Kept in the session (the pages already load it to know who is logged in). Django's default,
# the cookie-first fallback, builds a signed-cookie signer on every request, API calls included.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# --- Page security: TLS, cookies, HSTS and the Content-Security-Policy ---
# Behind TLS (a proxy terminating HTTPS in front of gunicorn and daphne) TLS=true sets every value
# below; each has its own variable to override it. Unset, they stay Django's defaults, which
# plain HTTP (`make run`) needs: a secure-only cookie is never sent over http://.
TLS = env.bool("TLS", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=TLS)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=TLS)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=TLS)
# A year, the minimum the browsers' preload lists accept. Once a browser has seen it, the site is
# HTTPS-only for it for that long: turn it on when TLS is there to stay.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if TLS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=TLS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=TLS)
# The header by which the TLS-terminating proxy says a request came over HTTPS (its value then is
# "https"); empty: none, the connection itself decides. The proxy must set it on every request,
# overwriting what the client sent, or a client could claim HTTPS.
_proxy_ssl_header = env.str("SECURE_PROXY_SSL_HEADER", default="X-Forwarded-Proto" if TLS else "").strip()
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https") if _proxy_ssl_header else None
)

from csp.constants import NONCE, NONE, SELF  # noqa: E402

# Every page (config/wsgi.py: not the JSON API) gets this policy. Scripts and styles come from
# this origin only; the few inline ones (the dashboard's import map, the API docs' start-up) carry
# the request's nonce (request.csp_nonce). connect-src also gets the WebSocket origin the page is
# told to use (trading/page_security.py). img-src admits data: URLs: the pages' empty favicon and
# the API docs' icons.
# lightweight-charts inserts one <style> element of its own, for the TradingView attribution logo
# its licence asks for; it is admitted by the hash of its exact text (lightweight-charts 5.2.1). A
# version that changes the text is refused, and the dashboard's browser test that counts CSP
# violations says so.
_CHART_ATTRIBUTION_STYLE_HASH = "'sha256-3pRED1tOXas1FXFoPb9TGCjmYe9XQsmO9OV23khV2nY='"
CONTENT_SECURITY_POLICY: dict[str, Any] = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE, _CHART_ATTRIBUTION_STYLE_HASH],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
