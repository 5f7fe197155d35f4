"""The steps ``make demo`` walks through once the platform is up, each calling the real services.

A hospital system files an erasure request over the REST API (and retries it with the same
``Idempotency-Key``); a compliance officer reviews and approves it, which resolves the scope;
the audit chain is signed and verified. Identifiers are printed only as keyed hashes.
"""

from __future__ import annotations

import json
import secrets
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from compliance.accounts import apikey_create, user_create
from compliance.forget_requests import forget_request_approve, forget_request_review
from compliance.models import ForgetRequest
from core.audit import audit_checkpoint, audit_verify
from core.principals import SYSTEM, principal_for_user
from hierarchy.identifiers import short
from hierarchy.models import Institution
from hierarchy.services import corpus_ingest
from mllm.data.schema import Corpus, load_corpus
from mllm.data.synth import generate_corpus

Echo = Callable[[str], None]
DEMO_SEED = 7


@dataclass(frozen=True)
class ApiResponse:
    status: int
    headers: dict[str, str]
    body: dict


def _post(url: str, payload: dict, *, token: str, idempotency_key: str) -> ApiResponse:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                 "Idempotency-Key": idempotency_key})
    with urllib.request.urlopen(request, timeout=30) as response:
        return ApiResponse(response.status, dict(response.headers), json.load(response))


def demo_corpus(home: Path, echo: Echo) -> Corpus:
    """The demo's synthetic corpus (generated once per data directory)."""
    root = home / "demo" / "corpus"
    if (root / "corpus.json").exists():
        return load_corpus(root)
    echo(f"Generating the synthetic hospital corpus (size tiny, seed {DEMO_SEED}) ...")
    return generate_corpus(size="tiny", seed=DEMO_SEED, out=root)


def run_walkthrough(*, base_url: str, home: Path, echo: Echo) -> None:
    """Intake over the API, review, approval with scope, audit verification."""
    corpus = demo_corpus(home, echo)
    corpus_ingest(corpus_dir=corpus.root, actor=SYSTEM)
    echo(f"Ingested corpus {corpus.header.name}: {len(corpus.records)} records "
         f"({len(corpus.select(trainable=True))} trained on) into the hierarchy")

    record = corpus.select(trainable=True)[0]
    institution = Institution.objects.get(code=record.institution_id)
    _, token = apikey_create(name=f"demo-{secrets.token_hex(3)}", institution_codes=[institution.code],
                             actor=SYSTEM)
    officer = user_create(username=f"officer-{secrets.token_hex(3)}", email="", roles=["compliance_officer"],
                          password=secrets.token_urlsafe(16), actor=SYSTEM)

    payload = {"subject": {"mrn": {"system": institution.mrn_system, "value": record.patient_id}},
               "regulation": "gdpr", "legal_basis": "gdpr_17_1_b",
               "requester": {"type": "data_subject", "reference": "demo-case-1"}}
    key = secrets.token_hex(8)
    first = _post(f"{base_url}/api/v1/forget-requests", payload, token=token, idempotency_key=key)
    retry = _post(f"{base_url}/api/v1/forget-requests", payload, token=token, idempotency_key=key)
    request_id = first.body["id"]
    echo(f"Hospital system filed forget request {request_id} for patient "
         f"{short(first.body['subject']['subject_hash'])} (HTTP {first.status}); "
         f"deadline {first.body['deadline']}")
    echo(f"  retry with the same Idempotency-Key -> HTTP {retry.status}, same id: "
         f"{retry.body['id'] == request_id}, replayed: {retry.headers.get('Idempotent-Replayed')}")

    actor = principal_for_user(officer)
    forget_request_review(request_id=request_id, actor=actor)
    approved = forget_request_approve(request_id=request_id, actor=actor, note="identity verified")
    counts = (approved.scope_summary or {}).get("counts", {})
    echo(f"Officer approved it (four-eyes: submitter {approved.submitted_by} != approver {actor.name}); "
         f"scope: {counts}")

    checkpoint = audit_checkpoint()
    result = audit_verify()
    echo(f"Audit chain: {result.events_checked} events, signed checkpoint at "
         f"#{checkpoint.seq if checkpoint else 'head'}; verification {'ok' if result.ok else result.problem}")
    echo(f"Requests on file: {ForgetRequest.objects.count()}")
