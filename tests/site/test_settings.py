"""Settings load on the embedded defaults (SQLite + filesystem broker) and on PostgreSQL."""

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.db import connection
with connection.cursor() as c:
    c.execute("SELECT 1")
print(json.dumps({"vendor": connection.vendor, "broker": settings.CELERY_BROKER_URL,
                  "backend": settings.CELERY_RESULT_BACKEND}))
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
    assert loaded["broker"] == "filesystem://"
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
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith("postgres"):
        database_url = POSTGRES_URL
    loaded = _load_settings(tmp_path, DATABASE_URL=database_url,
                            CELERY_BROKER_URL="redis://127.0.0.1:6379/0")
    assert loaded["vendor"] == "postgresql"
    assert loaded["broker"] == loaded["backend"] == "redis://127.0.0.1:6379/0"
