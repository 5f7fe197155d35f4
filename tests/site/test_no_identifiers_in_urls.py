"""Identifiers never travel in URLs or argv: after API and admin lookups against a real gunicorn and
a MedForget export from the command line, neither the access log nor the process table holds an
MRN or a StudyInstanceUID."""

from __future__ import annotations

import http.cookiejar
import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import subprocess_env
from django.contrib.auth import get_user_model
from django.test import Client
from oblivio_site.processes import server_argv

from compliance.accounts import apikey_create
from core.principals import SYSTEM
from hierarchy.identifiers import mrn_hash, short, study_uid_hash
from hierarchy.models import Institution
from hierarchy.services import corpus_ingest
from mllm.data.synth import generate_corpus

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _command_lines() -> list[str]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue  # the process ended while we looked
    return lines


def _wait_for(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the web server exited"
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # answered: it is up
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(url)


def test_lookups_and_exports_leave_no_identifier_in_logs_or_the_process_table(tmp_path: Path) -> None:
    corpus = generate_corpus(size="tiny", seed=0, out=tmp_path / "corpus")
    corpus_ingest(corpus_dir=corpus.root, actor=SYSTEM)
    record = corpus.select(trainable=True)[0]
    system = Institution.objects.get(code=record.institution_id).mrn_system
    mrn = f"{system}|{record.patient_id}"
    identifiers = {r.patient_id for r in corpus.records} | {r.study_id for r in corpus.records}
    _, token = apikey_create(name="EHR", institution_codes=[record.institution_id], actor=SYSTEM)
    admin = get_user_model().objects.create_superuser("root", "", "x-very-long-password-1")
    browser = Client()
    browser.force_login(admin)

    port, log = _free_port(), tmp_path / "access.log"
    server = subprocess.Popen([*server_argv(port=port, workers=1), "--access-logfile", str(log)],
                              env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{base}/admin/login/", server)
        api = urllib.request.Request(
            f"{base}/api/v1/subjects/lookup", method="POST",
            data=json.dumps({"mrn": {"system": system, "value": record.patient_id}}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert urllib.request.urlopen(api, timeout=30).status == 200

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        jar.set_cookie(http.cookiejar.Cookie(
            0, "sessionid", browser.cookies["sessionid"].value, None, False, "127.0.0.1", False, False,
            "/", True, False, None, False, None, None, {}))
        for model, term, digest in (("patient", mrn, mrn_hash(system, record.patient_id)),
                                    ("study", record.study_id, study_uid_hash(record.study_id))):
            page = opener.open(f"{base}/admin/hierarchy/{model}/", timeout=30).read().decode()
            csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
            found = opener.open(urllib.request.Request(
                f"{base}/admin/hierarchy/{model}/lookup/", method="POST",
                data=urllib.parse.urlencode({"csrfmiddlewaretoken": csrf, "identifier": term}).encode(),
                headers={"Referer": f"{base}/admin/hierarchy/{model}/"}), timeout=30)
            assert found.status == 200 and short(digest) in found.read().decode()

        nodes = tmp_path / "forget.txt"
        nodes.write_text(f"{record.institution_id}/{record.patient_id}\n")
        export = subprocess.Popen(
            [sys.executable, "-m", "oblivio_site.cli", "corpus", "export-medforget", str(corpus.root),
             "--out", str(tmp_path / "mf"), "--level", "patient", "--forget-file", str(nodes)],
            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        seen: list[str] = []
        while export.poll() is None:
            seen += _command_lines()
            time.sleep(0.05)
        assert export.wait() == 0, export.stdout.read().decode()
        seen += _command_lines()
    finally:
        server.terminate()
        server.wait(timeout=30)

    access = log.read_text()
    assert "POST /api/v1/subjects/lookup" in access and "POST /admin/hierarchy/patient/lookup/" in access
    assert any("export-medforget" in line for line in seen)  # the scan saw the command run
    for value in identifiers:
        assert value not in access, "an identifier reached the access log"
        assert not any(value in line for line in seen), "an identifier reached the process table"
