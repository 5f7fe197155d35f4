"""``make demo`` does the whole job on the embedded defaults (SQLite + filesystem broker): trains the
demo model, files and approves a request, and the worker process unlearns, verifies and certifies it."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import subprocess_env

from mllm.data.schema import load_corpus


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(900)  # trains the demo model: ~285 s on an idle 2-core machine
def test_demo_runs_on_embedded_defaults(tmp_path: Path) -> None:
    env = subprocess_env(OBLIVIO_HOME=str(tmp_path / "home"))
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        env.pop(name, None)
    result = subprocess.run([sys.executable, "-m", "oblivio_site.cli", "demo", "--exit",
                             "--port", str(_free_port())],
                            env=env, capture_output=True, text=True, timeout=880)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "ok  workers" in out
    assert "same id: True, replayed: true" in out
    assert "request certified" in out and "offline check ok" in out
    assert "verification ok" in out
    assert "Oblivio is running at http://127.0.0.1:" in out
    assert (tmp_path / "home" / "oblivio.sqlite3").exists()
    # Logs where the README says (rotating files under the data directory), and no identifiers in them.
    logs = tmp_path / "home" / "logs"
    web, worker = (logs / "web.log").read_text(), (logs / "worker.log").read_text()
    assert "Booting worker" in web and "ready" in worker
    corpus = load_corpus(tmp_path / "home" / "demo" / "corpus")
    identifiers = {value for record in corpus.records for value in (record.patient_id, record.study_id)}
    assert not [value for value in identifiers if value in web or value in worker]
    # What a second run depends on (model reused, the next patient chosen) is in test_walkthrough.py.


def test_the_demos_certificates_link_to_the_port_it_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    from oblivio_site.demo import demo_env

    monkeypatch.delenv("OBLIVIO_PUBLIC_URL", raising=False)
    assert demo_env("http://127.0.0.1:8123")["OBLIVIO_PUBLIC_URL"] == "http://127.0.0.1:8123"
    monkeypatch.setenv("OBLIVIO_PUBLIC_URL", "https://oblivio.example.org")  # a deployment's choice wins
    assert demo_env("http://127.0.0.1:8123")["OBLIVIO_PUBLIC_URL"] == "https://oblivio.example.org"
