"""The data directory and its secrets: one place whatever the working directory, created atomically."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.home import HomeError, oblivio_home, secret

PROBE = ("from core.home import oblivio_home; from hierarchy.identifiers import mrn_hash; "
         "print(oblivio_home()); print(mrn_hash('urn:x', '12345'))")


def test_default_data_directory_is_the_same_from_every_working_directory(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in {"OBLIVIO_HOME", "XDG_DATA_HOME"}}
    env["HOME"] = str(tmp_path / "user")
    outputs = []
    for where in ("a", "b/deeper"):
        cwd = tmp_path / where
        cwd.mkdir(parents=True)
        result = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
        assert list(cwd.iterdir()) == []  # nothing written where the command was started
    assert outputs[0] == outputs[1]
    assert outputs[0].splitlines()[0] == str(tmp_path / "user" / ".local" / "share" / "oblivio")


def test_a_relative_oblivio_home_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBLIVIO_HOME", "var")
    with pytest.raises(HomeError, match="absolute"):
        oblivio_home()


def _race(home: str, barrier: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue,
          rounds: int) -> None:
    for number in range(rounds):
        os.environ["OBLIVIO_HOME"] = f"{home}/{number}"
        barrier.wait()
        try:
            results.put((number, secret("identifier_hmac_key")))
        except Exception as exc:  # reported to the parent, which fails the test
            results.put((number, repr(exc)))


def test_processes_starting_together_end_with_one_complete_key(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    processes, rounds = 8, 200
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_race, args=(str(tmp_path), barrier, results, rounds))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    seen: dict[int, set] = {}
    for _ in range(processes * rounds):
        number, value = results.get(timeout=120)
        seen.setdefault(number, set()).add(value)
    for worker in workers:
        worker.join(timeout=60)
    for number, values in seen.items():
        assert len(values) == 1, f"round {number}: {values}"
        (value,) = values
        assert isinstance(value, bytes) and len(value) == 64
        on_disk = tmp_path / str(number) / "secrets" / "identifier_hmac_key"
        assert on_disk.read_bytes() == value
        assert oct(on_disk.stat().st_mode & 0o777) == "0o600"
        assert not list(on_disk.parent.glob("*.partial"))


def test_a_writer_that_fails_midway_leaves_no_secret_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBLIVIO_HOME", str(tmp_path))

    real_fdopen = os.fdopen

    class DiskFull:
        def __init__(self, fd: int, *args: object, **kwargs: object) -> None:
            self._file = real_fdopen(fd, "wb")

        def __enter__(self) -> DiskFull:
            return self

        def __exit__(self, *exc: object) -> None:
            self._file.close()

        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(os, "fdopen", DiskFull)
        with pytest.raises(OSError):
            secret("identifier_hmac_key")
    assert list((tmp_path / "secrets").iterdir()) == []
    assert len(secret("identifier_hmac_key")) == 64
