"""Logs (issue 11.8): the demo's server and worker logs rotate under the data directory; the
services themselves log JSON lines to stderr (containers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from oblivio_site.logfiles import LogPump

LINE = '{"level": "INFO", "message": "line %d of a busy web server"}'


def test_a_child_output_rotates_into_bounded_files(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", f"for n in range(2000): print({LINE!r} % n)"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    pump = LogPump(child.stdout, tmp_path / "web.log", max_bytes=20_000, backups=3)
    pump.start()
    assert child.wait(timeout=60) == 0
    pump.join(timeout=30)
    files = sorted(tmp_path.iterdir())
    assert [path.name for path in files] == ["web.log", "web.log.1", "web.log.2", "web.log.3"]
    assert all(path.stat().st_size <= 20_000 for path in files)
    newest = (tmp_path / "web.log").read_text().splitlines()
    assert json.loads(newest[-1])["message"] == "line 1999 of a busy web server"  # nothing cut off


def test_the_services_log_json_lines_to_stderr(tmp_path: Path) -> None:
    code = ("import django, logging; django.setup(); "
            "logging.getLogger('compliance').warning('hello', extra={'delivery_id': 7})")
    env = {"PATH": "/usr/bin:/bin", "OBLIVIO_HOME": str(tmp_path),
           "DJANGO_SETTINGS_MODULE": "oblivio_site.settings"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    record = json.loads(result.stderr.strip().splitlines()[-1])
    assert record["message"] == "hello" and record["delivery_id"] == 7 and not result.stdout
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").iterdir())
