"""Settings of every process (web, streams, worker, beat, market), one banner per concern.

Two kinds of values:

- **Read from the environment**: what an operator changes per deployment (secrets, hosts, proxies
  and TLS, the URLs of PostgreSQL and Redis, ports, the limits and retentions an operator tunes,
  the market's rate and seed, sign-up mode, commission, starting cash). The README's Configuration
  table lists every one of them with its default, and a test keeps the two in step.
- **Named constants**: internal tuning (pool bounds, timeouts, lock waits, L1 sizes, buffers, frame
  sizes) and the Redis key and channel names, which all derive from ``REDIS_KEY_PREFIX``. Tests
  override them with pytest-django's ``settings`` fixture; the processes a test starts load
  ``tests/settings.py``, which takes overrides for them.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import environ
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from config.embedded_redis import embedded_redis_socket

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
if (BASE_DIR / ".env").exists():
    env.read_env(str(BASE_DIR / ".env"))

# --- Core ---------------------------------------------------------------------------------------
# Runtime state: SQLite database, embedded Redis, generated secret key, collected static files.
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _local_secret_key() -> str:
    # A development key that survives restarts, so API-key HMACs and sessions stay valid.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="") or _local_secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Reverse proxies (addresses or networks) whose X-Forwarded-For names the client; every limit per
# client address counts by it (config/client_address.py). Empty: the connection's peer is the client.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
# Benchmark-only, set by `manage.py benchmark` for the servers it starts: the /v2/_bench/ping floor
# view and an X-DB-Queries header on every response (config/http_metrics.py).
BENCHMARK_ENDPOINTS = env.bool("BENCHMARK_ENDPOINTS", default=False)
# Benchmark-only: false runs the polled reads' and order placement's compiled querysets
# (trading/prepared.py) through the ORM's own path instead, `benchmark api --cpu`'s baseline.
PREPARED_QUERIES = env.bool("PREPARED_QUERIES", default=True)
# `manage.py benchmark all` writes its reports here, one timestamped directory each and `latest`
# pointing at the newest; the ops page serves that one to staff (analytics/benchmark_reports.py).
BENCHMARK_REPORTS_DIR = VAR_DIR / "benchmarks"

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
    # Outermost, so the latency it measures includes every other layer (config/http_metrics.py).
    "config.http_metrics.RequestMetricsMiddleware",
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

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django_redis": {"level": "ERROR"}},
}

# --- Database -----------------------------------------------------------------------------------
# A PostgreSQL server that does not answer (host unreachable, hung) fails a connection attempt
# after this many seconds instead of the OS's minutes, so requests answer 503 instead of hanging
# (libpq and psycopg take 2 s as their shortest timeout); `?connect_timeout=N` in the URL wins.
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
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", DB_CONNECT_TIMEOUT_S)
    # Django's backend with a health check that needs no round trip (config/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "config.postgresql"
    # The polled reads' statements are prepared on the server once per connection
    # (config/postgresql/base.py); a transaction-pooling proxy such as PgBouncer cannot keep a
    # session's prepared statements, so behind one they are off and bound on the client.
    if not env.bool("DB_PREPARED_STATEMENTS", default=True):
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = None
# Reused connections: opening one per request (and, on SQLite, re-running the WAL pragma) was
# the largest cost of a cached API read under gunicorn. 0 behind a transaction-pooling proxy.
# Health checks: a connection the server closed (a restart, a terminated backend) is replaced
# before a request's first query; on PostgreSQL the check is local (config/postgresql/base.py).
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: the server, its key and channel names, the pools --------------------------------------
# One Redis for the cache, the channel layer, the Celery broker and the fan-out. Unset: the first
# process starts an embedded redis-server on VAR_DIR/redis.sock and all processes share it.
_redis_url = env.str("REDIS_URL", default="")
EMBEDDED_REDIS = not _redis_url
if EMBEDDED_REDIS:
    _socket = embedded_redis_socket(VAR_DIR)
    REDIS_URL = f"unix://{_socket}?db=0"
    CELERY_BROKER_URL = f"redis+socket://{_socket}"
else:
    REDIS_URL = _redis_url
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)

# Every key and channel this project uses in Redis starts with this prefix, so deployments (and
# test runs) sharing one Redis keep theirs apart. Celery's broker keys are Celery's own.
REDIS_KEY_PREFIX = env.str("REDIS_KEY_PREFIX", default="sim")
if not re.fullmatch(r"[A-Za-z0-9_.:-]+", REDIS_KEY_PREFIX):
    raise ImproperlyConfigured(
        f"REDIS_KEY_PREFIX may hold only letters, digits and _.:- (it starts Redis key patterns), "
        f"not {REDIS_KEY_PREFIX!r}"
    )
# The latest quote per symbol, a hash the market process writes.
LATEST_QUOTES_KEY = f"{REDIS_KEY_PREFIX}:quotes:latest"
# Pub/sub channels: order events (new, replaced, canceled) for the market's triggers and the
# trade_updates streams; one message per market batch window; cache invalidations; a changed top
# of the leaderboard; revoked stream credentials.
ORDER_EVENTS_CHANNEL = f"{REDIS_KEY_PREFIX}:orders:events"
MARKET_WINDOWS_CHANNEL = f"{REDIS_KEY_PREFIX}:market:windows"
CACHE_INVALIDATION_CHANNEL = f"{REDIS_KEY_PREFIX}:cache:invalidate"
LEADERBOARD_EVENTS_CHANNEL = f"{REDIS_KEY_PREFIX}:leaderboard:events"
STREAM_REVOCATIONS_CHANNEL = f"{REDIS_KEY_PREFIX}:ws:revocations"
# Key prefixes: the API rate limiter's logs; the streams' shared connection, symbol and
# auth-failure counts. The client name labels the streams' connections in CLIENT LIST. The Django
# cache's and the channel layer's prefixes are in CACHES and CHANNEL_LAYERS below.
RATE_LIMIT_KEY_PREFIX = f"{REDIS_KEY_PREFIX}:rl"
STREAM_REDIS_PREFIX = f"{REDIS_KEY_PREFIX}:ws"
STREAM_REDIS_CLIENT_NAME = f"{REDIS_KEY_PREFIX}-ws"

# These variables named single keys and channels before REDIS_KEY_PREFIX did. A deployment that set
# them to keep its keys apart from another's would now share them without a word: refuse instead.
_retired_redis_name_variables = {
    "LATEST_QUOTES_KEY": (env.str("LATEST_QUOTES_KEY", default=""), LATEST_QUOTES_KEY),
    "ORDER_EVENTS_CHANNEL": (env.str("ORDER_EVENTS_CHANNEL", default=""), ORDER_EVENTS_CHANNEL),
    "MARKET_WINDOWS_CHANNEL": (env.str("MARKET_WINDOWS_CHANNEL", default=""), MARKET_WINDOWS_CHANNEL),
    "CACHE_INVALIDATION_CHANNEL": (
        env.str("CACHE_INVALIDATION_CHANNEL", default=""),
        CACHE_INVALIDATION_CHANNEL,
    ),
    "LEADERBOARD_EVENTS_CHANNEL": (
        env.str("LEADERBOARD_EVENTS_CHANNEL", default=""),
        LEADERBOARD_EVENTS_CHANNEL,
    ),
    "STREAM_REVOCATIONS_CHANNEL": (
        env.str("STREAM_REVOCATIONS_CHANNEL", default=""),
        STREAM_REVOCATIONS_CHANNEL,
    ),
    "RATE_LIMIT_KEY_PREFIX": (env.str("RATE_LIMIT_KEY_PREFIX", default=""), RATE_LIMIT_KEY_PREFIX),
    "STREAM_REDIS_PREFIX": (env.str("STREAM_REDIS_PREFIX", default=""), STREAM_REDIS_PREFIX),
    "STREAM_REDIS_CLIENT_NAME": (env.str("STREAM_REDIS_CLIENT_NAME", default=""), STREAM_REDIS_CLIENT_NAME),
    "CACHE_KEY_PREFIX": (env.str("CACHE_KEY_PREFIX", default=""), REDIS_KEY_PREFIX),
    "CHANNELS_PREFIX": (env.str("CHANNELS_PREFIX", default=""), f"{REDIS_KEY_PREFIX}:ch"),
}
_retired_set = [
    f"{name}={given!r} (REDIS_KEY_PREFIX={REDIS_KEY_PREFIX!r} makes it {derived!r})"
    for name, (given, derived) in _retired_redis_name_variables.items()
    if given and given != derived
]
if _retired_set:
    raise ImproperlyConfigured(
        "Redis key and channel names now derive from REDIS_KEY_PREFIX alone; set that instead of "
        + ", ".join(_retired_set)
    )

# Bounded pools that wait briefly, then fail into the degraded path instead of growing
# (config/redis_pools.py); the same bounds hold for the cache's and the broker's connections.
REDIS_POOL_MAX_CONNECTIONS = 50
REDIS_POOL_TIMEOUT = 1.0
# Connect and read timeout of every Redis call, in seconds.
REDIS_SOCKET_TIMEOUT = 2.0
# Retries of a Redis call after a connection error: none, pinned (config/redis_pools.py,
# redis_retry) rather than left to redis-py, whose defaults back off for seconds (a client built
# without a pool: 10 retries, ~4 s before it raises; a pool's connections get none in redis-py 8)
# and have changed between versions. Every Redis
# read of the request path has a degraded path (the database, the limiter's fallback) that must
# answer at once when Redis is down: an unreachable Redis costs a call 1 + REDIS_RETRIES connection
# attempts (tests/config/test_redis_retries.py counts them). The one re-dial a connection Redis
# closed while idle (a restart, its idle timeout) needs is already made without a retry: the pool
# dials a lent connection again when Redis' close has reached it, and the pinned connections
# (PinnedConnection, the limiter's) send once more on a fresh one when a send fails. A retry would
# double the attempts, and after a timeout the wait. Only connection errors count, never timeouts.
REDIS_RETRIES = 0

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": f"{REDIS_KEY_PREFIX}:ch"},
    }
}

# --- Cache ---------------------------------------------------------------------------------------
# Cached reads go through config/cache.py: an in-process L1 over Redis (the Django cache below).
CACHES: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_KEY_PREFIX,
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            # A BlockingConnectionPool with the shared pool's retry policy (REDIS_RETRIES).
            "CONNECTION_POOL_CLASS": "config.redis_pools.RetryPinnedPool",
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
# false: every cached read goes to the database (the API benchmark's uncached baseline).
CACHE_ENABLED = env.bool("CACHE_ENABLED", default=True)
# The one table of cache TTLs, in seconds per data type; e.g. CACHE_TTLS="leaderboard=3,assets=600"
# overrides single entries. The dashboard's market table (every active asset with prices and a
# sparkline) is shared by all users and followed over the stream anyway, hence its 2 s.
CACHE_TTLS: dict[str, float] = {
    "dashboard_assets": 2.0,
    "leaderboard": 5.0,
    # A game's standings at its end computed for the grace before the freeze (analytics/selectors.py,
    # _game_closing): a late fill of the last moment may still commit then, so only briefly.
    "game_closing": 1.0,
    "analytics": 60.0,
    "symbol_stats": 30.0,
    "assets": 300.0,
    **env.dict("CACHE_TTLS", cast={"value": float}, default={}),
}
# An L1 (in-process) copy lives at most this long whatever its type's TTL: the bound on a stale
# read across processes (why: config/cache.py; Property 34, docs/properties.md).
CACHE_L1_MAX_SECONDS = 1.0
CACHE_L1_MAX_ENTRIES = 2048
# Stampede lock: held at most this long by one recomputing process; others wait up to the wait.
CACHE_LOCK_SECONDS = 10.0
CACHE_LOCK_WAIT_SECONDS = 2.0
# After a Redis error the cache reads the database directly for this long before trying again.
CACHE_REDIS_RETRY_SECONDS = 1.0

# --- Metrics (config/metrics.py; README "Metrics") -------------------------------------------------
# Prometheus metrics of every process on the host at /metrics (multiprocess files under
# VAR_DIR/metrics). false: nothing is measured or written, the baseline of the cost figures.
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=True)
# A bearer token Prometheus sends to /metrics (Authorization: Bearer <token>); empty: only a staff
# member's session may read it.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# A database query slower than this is logged with its normalised SQL and route.
DB_SLOW_QUERY_MS = env.float("DB_SLOW_QUERY_MS", default=200.0)

# --- Monitoring and alerts (analytics/monitor.py; README "Monitoring and alerts") ----------------
# run_monitor evaluates the alert rules (analytics.AlertRule, edited in the admin) this often, from
# this host's metrics; it rereads the rules this often, keeping the last ones it read (also in
# MONITOR_RULES_FILE) while the database is down.
MONITOR_INTERVAL_SECONDS = 5.0
MONITOR_RULES_RELOAD_SECONDS = 30.0
MONITOR_RULES_FILE = VAR_DIR / "monitor-rules.json"
# One evaluator per host: run_monitor holds a Redis lock (<REDIS_KEY_PREFIX>:monitor:lock:<host>)
# this long, renewing it every cycle; a second run_monitor waits as a standby until it is free.
MONITOR_LOCK_SECONDS = 30.0
# Samples for the ops page's trends, in tiers: (seconds per sample, seconds kept). The coarsest
# tier is kept MONITORING_SAMPLE_RETENTION_DAYS (below), never less than the tier before it.
MONITOR_SAMPLE_TIERS: tuple[tuple[int, int], ...] = ((10, 24 * 3600), (60, 7 * 24 * 3600), (600, 0))
# Alerts are logged, mailed to every active staff user with an email address, and POSTed as JSON
# to this URL (empty: no webhook), retried with backoff (1 s, 2 s, 4 s ...) up to the attempts.
ALERT_WEBHOOK_URL = env.str("ALERT_WEBHOOK_URL", default="")
ALERT_WEBHOOK_ATTEMPTS = 5
ALERT_WEBHOOK_TIMEOUT_SECONDS = 5.0
ALERT_WEBHOOK_RETRY_BASE_SECONDS = 1.0
ALERT_WEBHOOK_RETRY_CAP_SECONDS = 30.0
ALERT_MAIL_FROM = env.str("ALERT_MAIL_FROM", default="monitor@localhost")

# --- Celery and background jobs ------------------------------------------------------------------
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing gives up after about a second (the pool bound), so a request whose enqueue fails
# writes an outbox row instead of hanging; beat drains the outbox.
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
# make effects exactly-once). A worker looks for such messages every interval times throttle
# seconds. Tests shorten all three to see a redelivery.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "unacked_restore_interval": 10,
    "unacked_restore_throttle": 10,
    "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
}
# Retries of transient failures (database or Redis unavailable): full jitter under
# base * 2^attempt, capped (jobs/retry.py); permanent errors are not retried.
JOB_RETRY_BASE_SECONDS = 2.0
JOB_RETRY_CAP_SECONDS = 600.0
JOB_MAX_RETRIES = 8
# A claimed job run whose worker vanished may be claimed again after this; longer than any job.
JOB_LEASE_SECONDS = 300
OUTBOX_DRAIN_BATCH = 500

# Retention: rows older than these are deleted by the hourly cleanup (each app registers its own
# rules, config/retention.py). Raw ticks are the bulk of the database: a day on SQLite, a week on
# PostgreSQL. Daily bars and statements are kept for ever.
TICK_RETENTION_HOURS = env.int(
    "TICK_RETENTION_HOURS", default=24 if DATABASES["default"]["ENGINE"].endswith("sqlite3") else 24 * 7
)
# 21 days of minute bars (about 1.4 GB on SQLite for 503 symbols around the clock) keep the whole
# database under 4 GB at these defaults (docs/architecture.md, Storage).
MINUTE_BAR_RETENTION_DAYS = env.int("MINUTE_BAR_RETENTION_DAYS", default=21)
JOB_RUN_RETENTION_DAYS = env.int("JOB_RUN_RETENTION_DAYS", default=30)
# Account equity per trading day (analytics.AccountEquityDay): the series returns over periods are
# computed from, so a year's return and a year-to-date one need more than 366 days; 400 leaves a
# margin. Never taken below the 90 days the analytics read.
EQUITY_DAY_RETENTION_DAYS = env.int("EQUITY_DAY_RETENTION_DAYS", default=400)
# Monitoring samples, the dashboard's frontend performance reports among them.
MONITORING_SAMPLE_RETENTION_DAYS = env.int("MONITORING_SAMPLE_RETENTION_DAYS", default=14)
# Rows per delete transaction: short transactions, so cleanup never holds a lock for long.
RETENTION_BATCH_SIZE = 5000

# --- Auth, sessions, sign-up and static files --------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Password guessing: attempts per username and client address (a success gives them back), and
# failed attempts per address over all names; both the admin's and the dashboard's logins.
AUTHENTICATION_BACKENDS = ["trading.api.throttling.LoginThrottleBackend"]
LOGIN_RATE_LIMIT = env.str("LOGIN_RATE_LIMIT", default="5/15min")
LOGIN_IP_RATE_LIMIT = env.str("LOGIN_IP_RATE_LIMIT", default="50/15min")
LOGIN_URL = "/login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"
# Flash messages are kept in the session (the pages already load it to know who is logged in).
# Django's default, the cookie-first fallback, builds a signed-cookie signer on every request,
# API calls included.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# Who may create an account at /signup: "open" (anyone), "invite" (whoever knows
# SIGNUP_INVITE_CODE) or "closed" (operators create users in the admin).
SIGNUP_MODE = env.str("SIGNUP_MODE", default="open").strip().lower()
SIGNUP_INVITE_CODE = env.str("SIGNUP_INVITE_CODE", default="")
if SIGNUP_MODE not in {"open", "invite", "closed"}:
    raise ImproperlyConfigured(f"SIGNUP_MODE must be open, invite or closed, not {SIGNUP_MODE!r}")
if SIGNUP_MODE == "invite" and not SIGNUP_INVITE_CODE:
    raise ImproperlyConfigured("SIGNUP_MODE=invite needs SIGNUP_INVITE_CODE")
# Accounts one client address may open, so a script cannot fill the leaderboard with accounts.
SIGNUP_IP_RATE_LIMIT = env.str("SIGNUP_IP_RATE_LIMIT", default="10/hour")

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
# whitenoise warns on every start when the directory is missing (a fresh VAR_DIR before collectstatic).
STATIC_ROOT.mkdir(exist_ok=True)
# Browser libraries come from the npm registry (package.json; `make` runs `npm ci`) and are served
# from node_modules under static/vendor/, never copied into the repository; the dashboard's import
# map points at them. Before `npm ci` the directories are missing and Django warns (staticfiles.W004).
DASHBOARD_VENDOR_STATIC_DIRS: list[Any] = [
    ("vendor/lightweight-charts", BASE_DIR / "node_modules/lightweight-charts/dist"),
    # lightweight-charts' ES module imports this by its bare name.
    ("vendor/fancy-canvas", BASE_DIR / "node_modules/fancy-canvas"),
]
STATICFILES_DIRS: list[Any] = [BASE_DIR / "static", *DASHBOARD_VENDOR_STATIC_DIRS]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_ROOT = VAR_DIR / "media"

# --- Security headers and TLS --------------------------------------------------------------------
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

# --- REST API ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "trading.api.authentication.APIKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["trading.api.throttling.EndpointRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # Every response is the view's first renderer's (JSON for the API), whatever Accept says, as
    # Alpaca answers (why: trading/api/negotiation.py).
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "trading.api.negotiation.FirstRendererNegotiation",
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
# Keyset pages of market data: Alpaca's default and maximum.
HISTORY_PAGE_DEFAULT = 1000
HISTORY_PAGE_MAX = 10000
# A verified API key is cached in Redis this long (each process also keeps it in its L1 for at
# most CACHE_L1_MAX_SECONDS); revoking a key drops both at once.
API_KEY_CACHE_SECONDS = 30

# --- Trading -------------------------------------------------------------------------------------
# Money is integer cents; see trading/units.py. The opening deposit of a new account, in dollars.
ACCOUNT_STARTING_CASH = env.str("ACCOUNT_STARTING_CASH", default="100000.00")
ACCOUNT_SELF_RESET = env.bool("ACCOUNT_SELF_RESET", default=True)
SHORT_SELLING_DEFAULT = env.bool("SHORT_SELLING_DEFAULT", default=False)
# Only staff may organise trading games (README, Running a game).
GAME_CREATE_STAFF_ONLY = env.bool("GAME_CREATE_STAFF_ONLY", default=False)
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

# --- Market process (run_market: the simulator, the tick writer and the resting-order engine) -----
# Each symbol trades on average once per this many seconds (500 symbols: ~250 ticks/s).
MARKET_TICK_INTERVAL_S = env.float("MARKET_TICK_INTERVAL_S", default=2.0)
# How many tradable symbols to simulate (0: all tradable assets).
MARKET_SYMBOLS = env.int("MARKET_SYMBOLS", default=0)
# Seed of the price model: the same seed and the same stored state give the same ticks.
MARKET_SEED = env.int("MARKET_SEED", default=42)
# Write-rate limits of the tick writer (0: unlimited), in any one-second interval; a batch window
# is one transaction.
MARKET_WRITE_MAX_ROWS_PER_S = env.float("MARKET_WRITE_MAX_ROWS_PER_S", default=50_000)
MARKET_WRITE_MAX_TXN_PER_S = env.float("MARKET_WRITE_MAX_TXN_PER_S", default=50)
# Batch window: the market publishes and each stream connection gets at most one frame per window
# (run_market --window-ms overrides it).
STREAM_BATCH_WINDOW_MS = 100
# Ticks of recent history kept in memory per symbol, so memory does not grow with uptime.
MARKET_RING_CAPACITY = 1000
# Windows queued between the simulator and the writer; when full the simulator waits.
MARKET_QUEUE_MAX_WINDOWS = 50
# How often the market re-reads the assets (operator halts, listings), and logs its throughput.
MARKET_HALT_POLL_S = 2.0
MARKET_LOG_INTERVAL_S = 10.0

# --- Streams (WebSockets: realtime/consumers.py, fanout.py, outbox.py; README "Streams") ---------
# Limits on what one client may hold: symbols per market-data connection, symbols summed over all of
# one user's connections (all its keys and sessions), connections per API key (or session user).
STREAM_MAX_SYMBOLS = env.int("STREAM_MAX_SYMBOLS", default=5000)
STREAM_MAX_SYMBOLS_PER_ACCOUNT = env.int("STREAM_MAX_SYMBOLS_PER_ACCOUNT", default=10_000)
STREAM_MAX_CONNECTIONS_PER_KEY = env.int("STREAM_MAX_CONNECTIONS_PER_KEY", default=5)
# Market-data feeds served at /v2/<feed>; another feed answers 409 at auth.
STREAM_FEEDS = ["iex", "sip", "test"]
# Alpaca's: a client has this long to authenticate.
STREAM_AUTH_TIMEOUT_S = 10.0
# A data frame's payload never exceeds this; a window with more is split into several frames.
STREAM_MAX_FRAME_BYTES = 64 * 1024
# Benchmark-only (`benchmark stream` serves its unbatched variant with it, Property 39): false sends
# each event in a WebSocket frame of its own instead of one frame per window. Never off in production.
STREAM_BATCH_EVENTS = env.bool("STREAM_BATCH_EVENTS", default=True)
# alpaca-py sends its whole subscription in one message (~6 bytes per symbol and channel).
STREAM_MAX_INBOUND_BYTES = 256 * 1024
# Client messages per second (token bucket) before the socket is closed with 4429.
STREAM_INBOUND_RATE = 20.0
STREAM_INBOUND_BURST = 50.0
# Back-pressure: unsent bytes in a socket's server-side buffer before it counts as not draining,
# windows queued before conflating, and windows a stalled client may fall behind before 407.
STREAM_SEND_BUFFER_BYTES = 256 * 1024
STREAM_OUTBOX_HIGH_WATER = 10
STREAM_OUTBOX_MAX_FRAMES = 100
# Failed auths with one existing API key within the window (from the first failure) before that
# key is answered 402 without a lookup.
STREAM_AUTH_FAILURES_MAX = 10
STREAM_AUTH_FAILURES_WINDOW_S = 60.0
# Lifetime of a connection's entry in the shared per-key count unless its process refreshes it
# (a crashed process's entries expire).
STREAM_CONNECTION_TTL_S = 60.0
# Order events queued per web process for trade_updates delivery (dropped and counted beyond).
STREAM_ORDER_EVENT_QUEUE = 10_000
# The young-generation threshold of Python's cyclic garbage collector in a process serving
# streams, raised (never lowered) when its fan-out starts; why: realtime/fanout.py,
# raise_gc_threshold. 0 keeps Python's default.
STREAM_GC_GEN0_THRESHOLD = 20_000
# Where browsers and bots reach the WebSocket streams, e.g. "wss://sim.example.com" behind a proxy;
# empty: the request's host name on WS_PORT (daphne's port under `make run`).
STREAM_PUBLIC_URL = env.str("STREAM_PUBLIC_URL", default="").rstrip("/")
WS_PORT = env.int("WS_PORT", default=8001)
# gunicorn's port under `make run`: the pages' own origin, allowed to open the WebSocket streams.
HTTP_PORT = env.int("HTTP_PORT", default=8000)

# --- Leaderboard, analytics and the dashboard ----------------------------------------------------
# A leaderboard older than this when read is recomputed before it is served.
LEADERBOARD_MAX_STALENESS_S = env.float("LEADERBOARD_MAX_STALENESS_S", default=5.0)
LEADERBOARD_LIMIT_DEFAULT = 50
LEADERBOARD_LIMIT_MAX = 500
# A game's final standings are frozen this long after its end, once the market writer has stored
# the ticks up to the end (it commits a moment after their instant); readers in between get the
# last live board marked "closing".
GAME_FREEZE_GRACE_S = env.float("GAME_FREEZE_GRACE_S", default=5.0)
# Annual risk-free rate for Sharpe ratios (0.04 = 4 %).
ANALYTICS_RISK_FREE_RATE = env.float("ANALYTICS_RISK_FREE_RATE", default=0.0)
# How many ranks count as "the board" for a change the dashboard's channel relays, and how many it
# sends (the body of GET /v2/leaderboard?limit=<this>).
DASHBOARD_LEADERBOARD_LIMIT = 20
# How often the dashboard page reports its rendering figures to POST /v2/metrics/frontend.
DASHBOARD_PERF_REPORT_INTERVAL_S = 30.0

# --- Benchmarks (manage.py benchmark; README "Benchmarks") ---------------------------------------
# Seconds a benchmark waits for the 1-minute load average to fall below one per core and the cores
# to be under a quarter busy now before it measures; a run that starts above either prints "noisy"
# instead of "yes" (benchmarks/_load.py).
BENCHMARK_QUIET_WAIT_S = 60.0
