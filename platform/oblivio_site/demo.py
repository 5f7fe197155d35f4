"""``make demo``: bring Oblivio up on the embedded defaults and walk through it.

Prepares the demo hospital and its served model (:func:`.walkthrough.prepare_demo`), starts a Celery
worker (all queues, ``ml`` included, with the periodic sweep) and the web server as child processes
(rotating logs under ``OBLIVIO_LOG_DIR``, default ``$OBLIVIO_HOME/logs``: :mod:`.logfiles`), waits
until ``/healthz`` is green, walks a forget request from intake to a verified certificate
(:mod:`.walkthrough`), prints where to look, and keeps running until Ctrl-C.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from django.conf import settings
from django.core.management import call_command

from core.home import oblivio_home

from .logfiles import LogPump
from .processes import child_env, server_argv, worker_argv
from .walkthrough import DEMO_THREADS, prepare_demo, run_walkthrough


class DemoError(RuntimeError):
    """The demo could not start; the message says why and what to do."""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def wait_healthy(base_url: str, *, timeout: float, procs: list[subprocess.Popen]) -> dict:
    """Poll ``/healthz`` until it answers 200; raise :class:`DemoError` on timeout or a dead child."""
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise DemoError(f"{proc.args[2:5]} exited with status {proc.returncode}; "
                                f"see the logs in {settings.OBLIVIO_LOG_DIR}")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    failing = [c["detail"] for c in body.get("checks", []) if not c["ok"]] or ["no answer"]
    raise DemoError(f"/healthz not green after {timeout:.0f}s: {'; '.join(failing)}")


def run_demo(*, port: int, keep_running: bool, echo: Callable[[str], None],
             prepare_only: bool = False) -> None:
    """Run the demo; see the module docstring. ``prepare_only``: stop once the demo hospital and its
    model are ready (what a later run reuses), before any process starts."""
    # SIGTERM ends the demo like Ctrl-C: the exit stack stops the worker and the server (else orphans)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not prepare_only and not _port_free(port):
        raise DemoError(f"port {port} is already in use; pass --port to choose another")
    home = oblivio_home()
    logs = settings.OBLIVIO_LOG_DIR
    logs.mkdir(parents=True, exist_ok=True)
    echo(f"Data directory: {home}")
    echo("Applying database migrations ...")
    call_command("migrate", interactive=False, verbosity=0)
    corpus = prepare_demo(home=home, echo=echo)
    if prepare_only:
        echo(f"Prepared in {home}; `oblivio demo` on this data directory starts from here.")
        return

    base_url = f"http://127.0.0.1:{port}"
    env = demo_env(base_url)
    with ExitStack() as stack:
        procs = [
            _start(stack, worker_argv(name="demo-worker", concurrency=2, beat=True), logs / "worker.log",
                   env),
            _start(stack, server_argv(port=port), logs / "web.log", env),
        ]
        echo("Starting worker and web server ...")
        health = wait_healthy(base_url, timeout=120, procs=procs)
        for check in health["checks"]:
            echo(f"  ok  {check['name']:<9} {check['detail']}")
        echo("")
        run_walkthrough(base_url=base_url, home=home, corpus=corpus, echo=echo)
        echo(f"\nOblivio is running at {base_url}/")
        echo(f"  health:   {base_url}/healthz")
        echo(f"  API docs: {base_url}/api/docs/")
        echo(f"  logs:     {logs}")
        if keep_running:
            echo("Press Ctrl-C to stop.")
            try:
                while all(proc.poll() is None for proc in procs):
                    time.sleep(1)
            except KeyboardInterrupt:
                echo("\nStopping ...")
            else:
                raise DemoError(f"a child process stopped; see the logs in {logs}")


def demo_env(base_url: str) -> dict[str, str]:
    """The children's environment: no batching window to wait for (one request), certificates
    linking to this server and the worker on the demo's torch threads (``DEMO_THREADS``), unless the
    environment chooses otherwise."""
    return {"OBLIVIO_JOB_BATCH_WINDOW_SECONDS": "0", "OBLIVIO_PUBLIC_URL": base_url,
            "OMP_NUM_THREADS": str(DEMO_THREADS), **child_env()}


def _start(stack: ExitStack, argv: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    pump = LogPump(proc.stdout, log_path, max_bytes=settings.OBLIVIO_LOG_MAX_BYTES,
                   backups=settings.OBLIVIO_LOG_BACKUPS)
    pump.start()
    stack.callback(pump.join, 10)  # after the child stopped: its last lines are written
    stack.callback(_stop, proc)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
