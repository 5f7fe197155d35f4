"""The inference-time guard: from approval until certification, prompts about the subject are refused.

A rule holds the keyed hashes of the subject's identifiers (MRN, StudyInstanceUIDs) and the SHA-256
of its images. The serving layer calls :func:`guard_screen` with the prompt text, the identifiers it
knows (e.g. from the DICOM header) and the image bytes; candidate identifiers are hashed with the
deployment key before matching, so the guard never stores or logs a raw identifier. A refusal is
suppression: it is counted on the rule, never reported as unlearning.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.audit import AuditAction, audit_append
from hierarchy.identifiers import mrn_hash, study_uid_hash
from hierarchy.models import Institution, Study
from hierarchy.scope import scope_resolve
from mllm.data.schema import load_corpus

from ..forget_requests import OBJECT_TYPE as REQUEST
from ..models import Deployment, ForgetRequest, GuardRule
from . import GUARD
from .policy import policy_for

#: Tokens that could be an MRN or a DICOM UID (letters, digits, dots, dashes).
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]{2,63}")


def _studies(request: ForgetRequest) -> list[Study]:
    node = request.subject_node
    if request.study_id:
        return [request.study]
    if request.patient_id:
        return list(Study.objects.filter(patient=node))
    return list(Study.objects.filter(patient__institution=node))


def _identifier_hashes(request: ForgetRequest) -> list[str]:
    hashes = {study.uid_hash for study in _studies(request)}
    if request.patient_id:
        hashes.add(request.patient.mrn_hash)
    elif not request.study_id:
        hashes.update(request.institution.patients.values_list("mrn_hash", flat=True))
    return sorted(hashes)


def _image_digests(request: ForgetRequest) -> list[str]:
    """SHA-256 of the images of the subject's records in every served model's corpus."""
    digests: set[str] = set()
    for deployment in Deployment.objects.filter(served__isnull=False).select_related("served__corpus"):
        served = deployment.served
        forget = scope_resolve(node=request.subject_node, corpus=served.corpus).forget
        if not forget:
            continue
        corpus = load_corpus(Path(served.corpus_root))
        for image in sorted({r.image for r in corpus.records if r.record_id in forget}):
            digests.add(hashlib.sha256(corpus.root.joinpath(image).read_bytes()).hexdigest())
    return sorted(digests)


def guard_activate(request: ForgetRequest) -> GuardRule:
    """Start refusing prompts about the request's subject (run when the request is approved)."""
    rule, _ = GuardRule.objects.update_or_create(
        request=request, defaults={"identifier_hashes": _identifier_hashes(request),
                                   "image_digests": _image_digests(request), "active": True,
                                   "activated_at": timezone.now(), "deactivated_at": None,
                                   "stays_on": policy_for(request.institution).guard_stays_on})
    audit_append(actor=GUARD, action=AuditAction.GUARD_ACTIVATED, object_type=REQUEST,
                 object_id=str(request.pk), subject_hash=request.subject_hash,
                 data={"identifiers": len(rule.identifier_hashes), "images": len(rule.image_digests),
                       "kind": "suppression"})
    return rule


def guard_release(request: ForgetRequest) -> None:
    """Stop the guard after certification or cancellation, unless policy keeps it as defence in depth."""
    rule = GuardRule.objects.filter(request=request, active=True).first()
    if rule is None or (rule.stays_on and request.status == "certified"):
        return
    rule.active, rule.deactivated_at = False, timezone.now()
    rule.save(update_fields=["active", "deactivated_at"])
    audit_append(actor=GUARD, action=AuditAction.GUARD_DEACTIVATED, object_type=REQUEST,
                 object_id=str(request.pk), subject_hash=request.subject_hash,
                 data={"refusals": rule.refusals, "reason": request.status})


@dataclass(frozen=True)
class GuardDecision:
    refused: bool
    request_ids: list[str]  # the rules that matched (request ids are not PHI)
    message: str = ""


def _candidate_hashes(prompt: str, identifiers: Sequence[str]) -> set[str]:
    tokens = set(_TOKEN.findall(prompt)) | {value.strip() for value in identifiers if value.strip()}
    systems = list(Institution.objects.values_list("mrn_system", flat=True))
    hashes = set()
    for token in tokens:
        hashes.add(study_uid_hash(token))
        if "|" in token:  # already "system|value"
            system, _, value = token.partition("|")
            hashes.add(mrn_hash(system, value))
        hashes.update(mrn_hash(system, token) for system in systems)
    return hashes


def guard_screen(*, prompt: str, identifiers: Sequence[str] = (),
                 images: Sequence[bytes] = ()) -> GuardDecision:
    """Whether the served model must refuse this prompt; counts the refusal on the matching rules."""
    rules = list(GuardRule.objects.filter(active=True).only("pk", "request_id", "identifier_hashes",
                                                              "image_digests"))
    if not rules:
        return GuardDecision(False, [])
    hashes = _candidate_hashes(prompt, identifiers)
    digests = {hashlib.sha256(image).hexdigest() for image in images}
    matched = [rule for rule in rules
               if hashes.intersection(rule.identifier_hashes) or digests.intersection(rule.image_digests)]
    if not matched:
        return GuardDecision(False, [])
    with transaction.atomic():
        GuardRule.objects.filter(pk__in=[rule.pk for rule in matched]).update(refusals=F("refusals") + 1)
    return GuardDecision(True, [str(rule.request_id) for rule in matched],
                         "This request concerns data under an erasure request; the model does not answer it.")
