"""Settings for a test session: the production settings on a throw-away data directory.

Loaded by pytest-django before any conftest, so the session's isolation is decided here:
- a fresh ``OBLIVIO_HOME`` (secrets, broker folders, SQLite files);
- a test database of its own (``test_oblivio_<pid>`` on PostgreSQL, a file on SQLite, so worker
  processes started by tests can open it too);
- on Redis, a database number no other running test session holds, so concurrent sessions on one
  machine never consume each other's tasks.
"""

import os
import tempfile

import redis

if "OBLIVIO_HOME" not in os.environ:
    os.environ["OBLIVIO_HOME"] = tempfile.mkdtemp(prefix="oblivio-test-home-")
    os.environ["OBLIVIO_TEST_HOME_CREATED"] = "1"  # removed again at the end of the session


def _claim_redis_database(url: str) -> str:
    """Return ``url`` pointing at a Redis database (1-15) claimed for this process for an hour."""
    base = url.rsplit("/", 1)[0] if url.count("/") >= 3 else url.rstrip("/")
    client = redis.Redis.from_url(f"{base}/0", socket_connect_timeout=3)
    try:
        for number in range(1, 16):
            if client.set(f"oblivio:test-session-db:{number}", os.getpid(), nx=True, ex=3600):
                client.close()
                return f"{base}/{number}"
    except redis.RedisError:
        return url  # conftest reports the unreachable broker with a clear message
    raise RuntimeError("all Redis databases 1-15 are claimed by running test sessions")


if os.environ.get("CELERY_BROKER_URL", "").startswith("redis://") and \
        "OBLIVIO_TEST_REDIS_CLAIMED" not in os.environ:
    os.environ["CELERY_BROKER_URL"] = _claim_redis_database(os.environ["CELERY_BROKER_URL"])
    os.environ.pop("CELERY_RESULT_BACKEND", None)
    os.environ["OBLIVIO_TEST_REDIS_CLAIMED"] = "1"

from oblivio_site.settings import *  # noqa: E402,F403
from oblivio_site.settings import ALLOWED_HOSTS, DATABASES, HOME  # noqa: E402

ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]  # Django's test client; never in production settings

DATABASES["default"]["TEST"] = (
    {"NAME": f"test_oblivio_{os.getpid()}"}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    else {"NAME": str(HOME / "test-db.sqlite3")}
)
