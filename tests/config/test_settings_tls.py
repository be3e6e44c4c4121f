"""TLS deployments: one switch (TLS=true) sets secure cookies, HSTS, the HTTPS redirect and the
proxy's HTTPS header, each overridable on its own; plain HTTP (`make run`) keeps Django's defaults;
and `check --deploy` is clean with production settings.

The settings are read from the environment when the settings module loads, so each case runs in
a fresh process, as a deployment would start.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.processes import ROOT, VENV_BIN

TLS_VARIABLES = (
    "TLS",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
)
PRINT_SETTINGS = f"""
import json, django
from django.conf import settings
django.setup()
print(json.dumps({{name: getattr(settings, name) for name in {TLS_VARIABLES[1:]!r}}}))
"""
# A request as the TLS-terminating proxy forwards it, and one that came over plain HTTP.
REQUEST_THROUGH_THE_PROXY = """
import json, django
from django.test import Client
from django.test.utils import setup_test_environment
django.setup()
setup_test_environment()
client = Client(HTTP_HOST="sim.example.com")
secure = client.get("/login", HTTP_X_FORWARDED_PROTO="https")
plain = client.get("/login")
print(json.dumps({
    "secure_status": secure.status_code,
    "hsts": secure.get("Strict-Transport-Security"),
    "csrf_cookie_secure": bool(secure.cookies["csrftoken"]["secure"]),
    "plain_status": plain.status_code,
    "plain_location": plain.get("Location"),
}))
"""


def run_python(code: str, tmp_path: Path, **variables: str) -> Any:
    """``code`` in a fresh process with the settings module and ``variables`` on top of an
    environment cleared of every TLS variable; its JSON output."""
    env = {name: value for name, value in os.environ.items() if name not in TLS_VARIABLES}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", VAR_DIR=str(tmp_path), **variables)
    done = subprocess.run(
        [str(VENV_BIN / "python"), "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_plain_http_keeps_djangos_defaults(tmp_path: Path) -> None:
    assert run_python(PRINT_SETTINGS, tmp_path) == {
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": None,
    }


def test_one_switch_sets_every_value_for_tls(tmp_path: Path) -> None:
    assert run_python(PRINT_SETTINGS, tmp_path, TLS="true") == {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }


def test_each_value_can_be_overridden_on_its_own(tmp_path: Path) -> None:
    overridden = run_python(
        PRINT_SETTINGS,
        tmp_path,
        TLS="true",
        SECURE_HSTS_SECONDS="300",
        SECURE_HSTS_PRELOAD="false",
        SECURE_PROXY_SSL_HEADER="X-Scheme",
    )
    assert overridden["SECURE_HSTS_SECONDS"] == 300
    assert overridden["SECURE_HSTS_PRELOAD"] is False
    assert overridden["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_SCHEME", "https"]
    assert overridden["SESSION_COOKIE_SECURE"] is True

    # TLS served by gunicorn itself: no proxy header to believe.
    direct = run_python(PRINT_SETTINGS, tmp_path, TLS="true", SECURE_PROXY_SSL_HEADER="")
    assert direct["SECURE_PROXY_SSL_HEADER"] is None

    one = run_python(PRINT_SETTINGS, tmp_path, SESSION_COOKIE_SECURE="true")
    assert one["SESSION_COOKIE_SECURE"] is True
    assert one["CSRF_COOKIE_SECURE"] is False and one["SECURE_HSTS_SECONDS"] == 0


def test_behind_the_tls_proxy_requests_get_hsts_and_secure_cookies(tmp_path: Path) -> None:
    answers = run_python(REQUEST_THROUGH_THE_PROXY, tmp_path, TLS="true", ALLOWED_HOSTS="sim.example.com")
    assert answers == {
        "secure_status": 200,
        "hsts": "max-age=31536000; includeSubDomains; preload",
        "csrf_cookie_secure": True,
        "plain_status": 301,
        "plain_location": "https://sim.example.com/login",
    }


@pytest.mark.slow
def test_check_deploy_is_clean_with_production_settings(tmp_path: Path) -> None:
    """drf-spectacular's schema warnings count: they are Django check warnings under --deploy."""
    env = {name: value for name, value in os.environ.items() if name not in TLS_VARIABLES}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        VAR_DIR=str(tmp_path),
        TLS="true",
        SECRET_KEY=secrets.token_urlsafe(50),
        DEBUG="false",
        ALLOWED_HOSTS="sim.example.com",
        CSRF_TRUSTED_ORIGINS="https://sim.example.com",
    )
    done = subprocess.run(
        [str(VENV_BIN / "python"), "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout
