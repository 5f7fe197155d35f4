"""Settings load on the embedded defaults (SQLite + filesystem broker) and on PostgreSQL + Redis;
production settings pass Django's deployment checks while the demo keeps plain-HTTP defaults."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import free_port

PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.db import connection
with connection.cursor() as c:
    c.execute("SELECT 1")
from oblivio_site.health import check_broker
import logging
from oblivio_site.celery import app
broker_warnings = []
class Keep(logging.Handler):
    def emit(self, record):
        broker_warnings.append(record.getMessage())
logging.getLogger("kombu").addHandler(Keep(logging.WARNING))
with app.connection_for_write() as broker:
    broker.clone()  # what publishing a task does (Celery's producer pool)
print(json.dumps({"broker_warnings": broker_warnings,
                  "vendor": connection.vendor, "broker": settings.CELERY_BROKER_URL,
                  "backend": settings.CELERY_RESULT_BACKEND, "broker_ok": check_broker().ok,
                  "allowed_hosts": settings.ALLOWED_HOSTS,
                  "secure_cookies": settings.SESSION_COOKIE_SECURE and settings.CSRF_COOKIE_SECURE,
                  "ssl_redirect": settings.SECURE_SSL_REDIRECT,
                  "transport": settings.CELERY_BROKER_TRANSPORT_OPTIONS}))
"""

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _load_settings(tmp_path: Path, **env: str) -> dict:
    full_env = {k: v for k, v in os.environ.items()
                if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"}}
    full_env.update(OBLIVIO_HOME=str(tmp_path / "home"),
                    DJANGO_SETTINGS_MODULE="oblivio_site.settings", **env)
    out = subprocess.run([sys.executable, "-c", PROBE], env=full_env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def test_embedded_defaults_need_no_server(tmp_path: Path) -> None:
    loaded = _load_settings(tmp_path)
    assert loaded["vendor"] == "sqlite"
    assert loaded["broker"] == "filesystem://localhost/"
    assert loaded["broker_warnings"] == []  # kombu warned on every publish of a URL without a host
    assert loaded["backend"].startswith("file://")
    home = tmp_path / "home"
    assert (home / "oblivio.sqlite3").exists()
    secrets = home / "secrets"
    for name in ("django_secret_key", "identifier_hmac_key", "webhook_secret_key"):
        assert (secrets / name).stat().st_mode & 0o077 == 0, f"{name} readable by others"


def test_secrets_are_generated_once_and_kept(tmp_path: Path) -> None:
    _load_settings(tmp_path)
    key = (tmp_path / "home" / "secrets" / "identifier_hmac_key").read_bytes()
    _load_settings(tmp_path)
    assert (tmp_path / "home" / "secrets" / "identifier_hmac_key").read_bytes() == key


def test_postgresql_and_redis_from_environment(tmp_path: Path) -> None:
    """The settings connect to the PostgreSQL and the Redis named in the environment (and a Redis
    that is not there is reported unreachable: the check really contacts it)."""
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith("postgres"):
        database_url = POSTGRES_URL
    loaded = _load_settings(tmp_path, DATABASE_URL=database_url,
                            CELERY_BROKER_URL="redis://127.0.0.1:6379/0")
    assert loaded["vendor"] == "postgresql"
    assert loaded["broker"] == loaded["backend"] == "redis://127.0.0.1:6379/0"
    assert loaded["broker_ok"] is True
    # a request publishing during an outage fails fast (no retry), and ML tasks outlast a long step
    transport = loaded["transport"]
    assert transport["max_retries"] == 0 and transport["socket_connect_timeout"] <= 1.0
    assert transport["visibility_timeout"] > 12 * 3600
    absent = f"redis://127.0.0.1:{free_port()}/0"
    assert _load_settings(tmp_path, CELERY_BROKER_URL=absent)["broker_ok"] is False


def test_production_settings_pass_the_deployment_checks(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(OBLIVIO_HOME=str(tmp_path / "home"), OBLIVIO_DEPLOYMENT="production")
    oblivio = str(Path(sys.executable).with_name("oblivio"))
    checked = subprocess.run([oblivio, "manage", "check", "--deploy", "--fail-level", "WARNING"], env=env,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    production = _load_settings(tmp_path, OBLIVIO_DEPLOYMENT="production")
    assert production["secure_cookies"] and production["ssl_redirect"]
    assert "testserver" not in production["allowed_hosts"]


def test_the_demo_keeps_plain_http_on_loopback(tmp_path: Path) -> None:
    demo = _load_settings(tmp_path)
    assert not demo["secure_cookies"] and not demo["ssl_redirect"]
    assert set(demo["allowed_hosts"]) == {"localhost", "127.0.0.1", "[::1]"}
    env = dict(os.environ, OBLIVIO_HOME=str(tmp_path / "home"), OBLIVIO_DEPLOYMENT="staging",
               DJANGO_SETTINGS_MODULE="oblivio_site.settings")
    wrong = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env,
                           capture_output=True, text=True)
    assert wrong.returncode != 0 and "OBLIVIO_DEPLOYMENT must be" in wrong.stderr
