"""Health: a real task round trip through the broker to a real worker; /healthz and doctor."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import subprocess_env
from oblivio_site.health import check_roundtrip, run_checks


@pytest.mark.services
@pytest.mark.django_db
def test_task_round_trip_through_broker_to_worker(live_worker) -> None:
    check = check_roundtrip(timeout=30)
    assert check.ok, check.detail
    live_worker.stop()  # the answer came from that worker through the broker, not from this process
    assert not check_roundtrip(timeout=3).ok


@pytest.mark.services
@pytest.mark.django_db
def test_healthz_green_with_worker_and_unhealthy_once_it_stops(client, live_worker) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "ok"

    live_worker.stop()
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    workers = next(c for c in body["checks"] if c["name"] == "workers")
    assert workers["ok"] is False
    assert "no live worker" in workers["detail"]


@pytest.mark.django_db
def test_checks_report_database_and_broker() -> None:
    checks = {c.name: c for c in run_checks()}
    assert checks["database"].ok
    assert checks["broker"].ok


def test_doctor_fails_clearly_without_a_worker(tmp_path: Path) -> None:
    env = subprocess_env(OBLIVIO_HOME=str(tmp_path))
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    result = subprocess.run([sys.executable, "-m", "oblivio_site.cli", "doctor", "--json"],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["database"]["ok"] and checks["broker"]["ok"]
    assert not checks["workers"]["ok"]
    assert "oblivio worker" in checks["workers"]["detail"]


def test_doctor_names_an_unreachable_broker(tmp_path: Path) -> None:
    env = subprocess_env(OBLIVIO_HOME=str(tmp_path), CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    env.pop("DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-m", "oblivio_site.cli", "doctor", "--no-roundtrip"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "broker redis://127.0.0.1:1/0 unreachable" in result.stdout
