"""``make demo`` does the whole job on the embedded defaults (SQLite + filesystem broker): trains the
demo model (``--prepare-only``, in the background from the start of the session: ``demo_run``), then
files and approves a request, and the worker process unlearns, verifies and certifies it."""

import subprocess
import sys

import pytest
from conftest import free_port
from demo_run import PREPARE_TIMEOUT_SECONDS, DemoRun, demo_env

from mllm.data.schema import load_corpus


@pytest.mark.slow
@pytest.mark.timeout(PREPARE_TIMEOUT_SECONDS + 600)
def test_demo_runs_on_embedded_defaults(demo_run: DemoRun) -> None:
    returncode, prepared = demo_run.prepared(timeout=PREPARE_TIMEOUT_SECONDS)  # started in the background
    assert returncode == 0, prepared
    assert "Training the demo's reference model" in prepared and "Serving model" in prepared
    result = subprocess.run([sys.executable, "-m", "oblivio_site.cli", "demo", "--exit",
                             "--port", str(free_port())],
                            env=demo_env(demo_run.home), capture_output=True, text=True, timeout=580)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Training the demo's reference model" not in out  # the prepared model is reused
    assert "ok  workers" in out
    assert "same id: True, replayed: true" in out
    assert "request certified" in out and "offline check ok" in out
    assert "verification ok" in out
    assert "Oblivio is running at http://127.0.0.1:" in out
    home = demo_run.home
    assert (home / "oblivio.sqlite3").exists()
    # Logs where the README says (rotating files under the data directory), and no identifiers in them.
    logs = home / "logs"
    web, worker = (logs / "web.log").read_text(), (logs / "worker.log").read_text()
    assert "Booting worker" in web and "ready" in worker
    corpus = load_corpus(home / "demo" / "corpus")
    identifiers = {value for record in corpus.records for value in (record.patient_id, record.study_id)}
    assert not [value for value in identifiers if value in web or value in worker]
    # What a second run depends on (model reused, the next patient chosen) is in test_walkthrough.py.


def test_the_demos_certificates_link_to_the_port_it_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    from oblivio_site.demo import demo_env

    monkeypatch.delenv("OBLIVIO_PUBLIC_URL", raising=False)
    assert demo_env("http://127.0.0.1:8123")["OBLIVIO_PUBLIC_URL"] == "http://127.0.0.1:8123"
    monkeypatch.setenv("OBLIVIO_PUBLIC_URL", "https://oblivio.example.org")  # a deployment's choice wins
    assert demo_env("http://127.0.0.1:8123")["OBLIVIO_PUBLIC_URL"] == "https://oblivio.example.org"
