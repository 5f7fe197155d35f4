"""Test-session setup shared by every layer.

Every test session gets its own data directory (see ``testing_settings``). When the configured
database or broker is PostgreSQL / Redis, they must be reachable:
the session stops with a clear message instead of skipping tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def subprocess_env(**overrides: str) -> dict[str, str]:
    """Environment for processes the tests start: production settings on this session's data
    directory, broker and (once created) test database."""
    from django.conf import settings
    from django.db import connection

    env = dict(os.environ, DJANGO_SETTINGS_MODULE="oblivio_site.settings",
               OBLIVIO_AUDIT_WITNESS_FILE=settings.OBLIVIO_AUDIT_WITNESS_FILE)  # the test's own witness
    database = connection.settings_dict
    if database["ENGINE"] == "django.db.backends.postgresql":
        env["DATABASE_URL"] = (f"postgresql://{database['USER']}@{database['HOST']}:{database['PORT']}"
                               f"/{database['NAME']}")
    elif database["NAME"] != ":memory:" and not str(database["NAME"]).startswith("file:"):
        env["DATABASE_URL"] = f"sqlite:///{database['NAME']}"
    env.update(overrides)
    return env


def _unreachable_services() -> list[str]:
    problems = []
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith(("postgres://", "postgresql://")):
        import psycopg

        try:
            psycopg.connect(database_url, connect_timeout=3).close()
        except psycopg.Error as exc:
            problems.append(f"PostgreSQL at DATABASE_URL is unreachable ({exc}). Start it with: "
                            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start")
    broker_url = os.environ.get("CELERY_BROKER_URL", "")
    if broker_url.startswith("redis://"):
        import redis

        try:
            redis.Redis.from_url(broker_url, socket_connect_timeout=3).ping()
        except redis.RedisError as exc:
            problems.append(f"Redis at CELERY_BROKER_URL is unreachable ({exc}). Start it with: "
                            "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 "
                            "--save '' --appendonly no")
    return problems


def pytest_sessionstart(session: pytest.Session) -> None:
    problems = _unreachable_services()
    if problems:
        pytest.exit("required services are down:\n  " + "\n  ".join(problems), returncode=3)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Release what ``testing_settings`` took for this session: its data directory and Redis database."""
    if os.environ.pop("OBLIVIO_TEST_HOME_CREATED", None):
        shutil.rmtree(os.environ["OBLIVIO_HOME"], ignore_errors=True)
    url = os.environ.get("CELERY_BROKER_URL", "")
    if url.startswith("redis://") and os.environ.get("OBLIVIO_TEST_REDIS_CLAIMED"):
        import redis

        base, number = url.rsplit("/", 1)
        redis.Redis.from_url(url).flushdb()
        redis.Redis.from_url(f"{base}/0").delete(f"oblivio:test-session-db:{number}")


@pytest.fixture(autouse=True)
def _own_audit_witness(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each database test gets its own audit witness file: the database is rolled back after a
    test, and a witness remembering another test's checkpoints would (rightly) fail verification.
    Tests reaching the database through the ``db``/``transactional_db`` fixtures count too; processes
    the test starts inherit the file (``subprocess_env``)."""
    uses_database = {"db", "transactional_db"} & set(request.fixturenames)
    if request.node.get_closest_marker("django_db") is not None or uses_database:
        settings = request.getfixturevalue("settings")
        settings.OBLIVIO_AUDIT_WITNESS_FILE = str(tmp_path_factory.mktemp("witness") / "audit.jsonl")


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory):
    """The small hospital of ``small_hospital.py`` with its original and retrain oracle (trained once)."""
    from small_hospital import build_world

    return build_world(tmp_path_factory.mktemp("small-hospital"))


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Let the test runner empty the audit tables between transactional tests.

    Production keeps the append-only triggers (see compliance migration 0002); only the test database
    drops the ones that would block Django's flush. Tamper tests re-check the triggers explicitly.
    """
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        for table in ("compliance_auditevent", "compliance_auditcheckpoint"):
            if connection.vendor == "postgresql":
                cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_no_truncate")
            else:
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveProcess:
    """A child process (``oblivio serve``, a worker, a Redis) with its output in a log file."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def redis_start(port: int, log: Path) -> LiveProcess:
    """A throw-away ``redis-server`` on ``port`` (nothing persisted), answering PING when returned."""
    import redis

    server = LiveProcess(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no"], log)
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    for _ in range(100):
        try:
            client.ping()
            return server
        except redis.RedisError:
            time.sleep(0.1)
    raise RuntimeError(server.log())


class LiveServer(LiveProcess):
    """The production web server (``server_argv``: gunicorn) on a free loopback port."""

    def __init__(self, log_path: Path, env: dict[str, str], **options: int) -> None:
        from oblivio_site.processes import server_argv

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(server_argv(port=self.port, **options), log_path, env)

    def wait_ready(self, timeout: float = 60.0) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log()}")
            try:
                urllib.request.urlopen(f"{self.url}/api/v1/institutions", timeout=2)
            except urllib.error.HTTPError:
                return  # 401: the application answers
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"server did not answer within {timeout}s: {self.log()}")


class LiveWorker(LiveProcess):
    """A real ``oblivio worker`` process on the configured broker (``subprocess_env(**overrides)``)."""

    def __init__(self, name: str, log_path: Path, *, beat: bool = False, **overrides: str) -> None:
        from oblivio_site.processes import worker_argv

        self.name = name
        super().__init__(worker_argv(name=name, beat=beat), log_path, subprocess_env(**overrides))

    def wait_ready(self, timeout: float = 60.0) -> None:
        from oblivio_site.celery import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}: {self.log()}")
            replies = app.control.ping(destination=[self.hostname], timeout=1.0)
            if replies:
                return
        raise TimeoutError(f"worker {self.hostname} did not answer within {timeout}s")

    @property
    def hostname(self) -> str:
        import socket

        return f"{self.name}@{socket.gethostname()}"


@pytest.fixture
def live_gunicorn(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start the production web server with ``subprocess_env(**overrides)``; stopped after the test."""
    started: list[LiveServer] = []

    def start(*, options: dict[str, int] | None = None, **overrides: str) -> LiveServer:
        server = LiveServer(tmp_path / f"web-{len(started)}.log", subprocess_env(**overrides),
                            **(options or {}))
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def live_worker(tmp_path: Path) -> Iterator[LiveWorker]:
    """Start a real Celery worker consuming every queue; stopped after the test."""
    worker = LiveWorker(f"test-{uuid.uuid4().hex[:8]}", tmp_path / "worker.log")
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()
