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
def test_demo_runs_on_embedded_defaults(demo_run: DemoRun, tmp_path) -> None:
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
    # the printed shell check works where an auditor runs it: another data directory, the public key given
    command = out.split("without the data directory: ", 1)[1].splitlines()[0].split()
    assert command[:3] == ["oblivio", "certificate", "verify"] and "--public-key" in command
    auditor = subprocess.run([sys.executable, "-m", "oblivio_site.cli", *command[1:]],
                             env=demo_env(tmp_path / "auditor"), capture_output=True, text=True, timeout=120)
    assert auditor.returncode == 0, auditor.stdout + auditor.stderr
    assert auditor.stdout.startswith("ok: certificate")
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


def test_the_demo_trains_and_unlearns_on_its_own_threads(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's model (and so its request's path) depends on torch's thread count: training and the
    worker use ``DEMO_THREADS`` on any machine."""
    from types import SimpleNamespace

    import torch
    from oblivio_site import walkthrough
    from oblivio_site.demo import demo_env

    from mllm.models.runtime import cpu_threads

    seen: list[int] = []

    def train(job, report):
        seen.append(torch.get_num_threads())
        job.out.mkdir(parents=True)
        return SimpleNamespace(digest="sha256:" + "0" * 64, result=SimpleNamespace(seconds=0.0))

    monkeypatch.setattr(walkthrough, "run_train_job", train)
    corpus = SimpleNamespace(root=tmp_path, select=lambda **_: [])
    with cpu_threads(1):  # a machine whose default differs
        walkthrough.demo_model(tmp_path, corpus, echo=lambda _: None)  # type: ignore[arg-type]
        assert torch.get_num_threads() == 1
    assert seen == [walkthrough.DEMO_THREADS]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert demo_env("http://127.0.0.1:8123")["OMP_NUM_THREADS"] == str(walkthrough.DEMO_THREADS)
