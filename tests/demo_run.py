"""The slow part of ``site/test_demo.py`` runs in the background from the start of the session.

``oblivio demo --prepare-only`` (the demo hospital and the training of its model: ~200 s, once per
data directory) starts when collection finishes, at the idle CPU priority, so it uses only what the
rest of the suite leaves idle and the other tests' timings stay as they were (a normal-priority run
beside them made torch-heavy tests up to four times slower). It trains on the demo's own torch threads
(``DEMO_THREADS``), as ``make demo`` does: the model, and so the path the request takes, depends on
them (trained on one thread here, the demo's request fell through to the 200-s retraining rung). The demo test
then runs ``oblivio demo --exit`` on that data directory in the foreground, as a second run would:
server, worker and the request walked from intake to a certificate, at normal priority, so none of
the demo's own timeouts depends on the load of the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

#: Wall-clock limit for the preparation, counted from its start; it usually ends long before the demo
#: test runs (the last directory of the suite).
PREPARE_TIMEOUT_SECONDS = 1500
#: The session's own database, broker and audit witness: the demo runs on its embedded defaults.
_SESSION_SERVICES = ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
                     "OBLIVIO_AUDIT_WITNESS_FILE")


def _idle_priority() -> None:
    """In the child before exec: run only on CPU time nothing else wants (Linux), else the lowest nice."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)


def demo_env(home: Path) -> dict[str, str]:
    """This process's environment for an ``oblivio demo`` on ``home`` and the embedded defaults."""
    env = {name: value for name, value in os.environ.items() if name not in _SESSION_SERVICES}
    return {**env, "DJANGO_SETTINGS_MODULE": "oblivio_site.settings", "OBLIVIO_HOME": str(home)}


@dataclass
class DemoRun:
    """A data directory of its own (``home``) for ``oblivio demo``, prepared in the background."""

    root: Path
    preparing: subprocess.Popen
    _output: IO[str] = field(repr=False)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @classmethod
    def start(cls) -> DemoRun:
        root = Path(tempfile.mkdtemp(prefix="oblivio-demo-test-"))
        output = (root / "prepare.txt").open("w")
        preparing = subprocess.Popen(
            [sys.executable, "-m", "oblivio_site.cli", "demo", "--prepare-only"],
            env=demo_env(root / "home"), stdout=output, stderr=subprocess.STDOUT, preexec_fn=_idle_priority)
        return cls(root=root, preparing=preparing, _output=output)

    def prepared(self, timeout: float) -> tuple[int, str]:
        """The preparation's exit status and output, once it has ended (``TimeoutExpired`` after
        ``timeout``)."""
        returncode = self.preparing.wait(timeout=timeout)
        self._output.flush()
        return returncode, (self.root / "prepare.txt").read_text(errors="replace")

    def stop(self) -> None:
        """End the preparation if it still runs (nothing else of it runs: no server, no worker)."""
        if self.preparing.poll() is None:
            self.preparing.kill()
            self.preparing.wait()
        self._output.close()
        shutil.rmtree(self.root, ignore_errors=True)
