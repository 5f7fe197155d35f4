"""The model registry: versions of each deployment, the one served pointer, promotion and rollback.

A candidate is promoted only together with a passing verification report of that same candidate.
Promotion retires the previously served version; retired versions that still hold data a certified
request removed are deleted (artifact gone, row and audit events kept with their digests). Rollback
never brings forgotten data back: it is refused for a version that still holds any.
"""

from __future__ import annotations

from pathlib import Path

from django.db import transaction
from django.utils import timezone

from core.audit import AuditAction, audit_append
from core.models import AuditEvent
from core.principals import Principal
from hierarchy.models import Corpus
from mllm.data.schema import CorpusError, load_corpus
from mllm.models.artifact import read_metadata

from ..attestation import json_digest
from ..errors import Conflict, Invalid, NotFound
from ..models import Deployment, ModelVersion, UnlearningJob, VerificationRecord, VersionStatus
from . import PIPELINE
from .storage import artifact_storage

OBJECT_TYPE = "model_version"


def _audit(action: AuditAction, version: ModelVersion, actor: Principal, **data: object) -> None:
    audit_append(actor=actor, action=action, object_type=OBJECT_TYPE, object_id=str(version.pk),
                 data={"deployment": version.deployment.name, "artifact_digest": version.artifact_digest,
                       **data})


def model_version_register(*, deployment: str, artifact_dir: Path, corpus: Corpus, corpus_root: Path,
                           actor: Principal, serve: bool = True) -> ModelVersion:
    """Register a trained model of ``corpus`` (stored by digest); serve it if asked.

    Serving a freshly registered model is an operator's decision (a newly trained model), not a
    promotion of an unlearned candidate, which only :func:`version_promote` does. Every scope of the
    version is resolved against ``corpus_root``: it must hold ``corpus``, and a model whose metadata
    names the corpus it was trained on must name that one (a checkpoint trained outside Oblivio names
    none and is taken on the operator's word).
    """
    if not (Path(artifact_dir) / "config.json").is_file() and read_metadata(artifact_dir) is None:
        raise Invalid("not a model artifact directory", field="artifact_dir", code="not_an_artifact")
    try:
        held = load_corpus(corpus_root).header.records_sha256
    except CorpusError as exc:
        raise Invalid(f"corpus directory: {exc}", field="corpus_root", code="not_a_corpus") from None
    if held != corpus.records_sha256:
        raise Invalid(f"the corpus directory holds corpus {held[:12]}, not the ingested corpus "
                      f"{corpus.records_sha256[:12]}", field="corpus_root", code="corpus_mismatch")
    metadata = read_metadata(artifact_dir)
    if metadata is not None and metadata.corpus_sha256 and metadata.corpus_sha256 != corpus.records_sha256:
        raise Invalid(f"the model was trained on corpus {metadata.corpus_sha256[:12]}, not on "
                      f"{corpus.records_sha256[:12]}: its forget requests would be resolved against records "
                      "it never saw", field="corpus", code="corpus_mismatch")
    storage = artifact_storage()
    key = storage.put(Path(artifact_dir))
    with transaction.atomic():
        target, _ = Deployment.objects.select_for_update(no_key=True).get_or_create(name=deployment)
        version, created = ModelVersion.objects.get_or_create(
            deployment=target, artifact_digest=key,
            defaults={"storage_key": key, "corpus": corpus, "corpus_root": str(Path(corpus_root).resolve()),
                      "base_digest": (metadata.base_digest or "") if metadata else ""})
        if created:
            _audit(AuditAction.MODEL_VERSION_REGISTERED, version, actor, corpus_id=corpus.pk,
                   base_digest=version.base_digest)
        if serve and target.served_id != version.pk:
            _serve(target, version, actor=actor, action=AuditAction.MODEL_VERSION_PROMOTED,
                   reason="registered")
    return version


def candidate_register(*, job: UnlearningJob, artifact_dir: Path, method: str, exact: bool) -> ModelVersion:
    """Store a job's unlearned artifact as a candidate (idempotent: the same digest is one version)."""
    key = artifact_storage().put(Path(artifact_dir))
    base = job.base_version
    metadata = read_metadata(artifact_dir)
    with transaction.atomic():
        version, created = ModelVersion.objects.get_or_create(
            deployment=job.deployment, artifact_digest=key,
            defaults={"parent": base, "storage_key": key, "corpus": base.corpus,
                      "corpus_root": base.corpus_root, "method": method, "exact": exact,
                      "base_digest": (metadata.base_digest or "") if metadata else "",
                      "forgotten_records": sorted(set(base.forgotten_records) | set(job.forget_records)),
                      "job": job})
        if created:
            _audit(AuditAction.MODEL_VERSION_REGISTERED, version, PIPELINE, job_id=str(job.pk),
                   parent_digest=base.artifact_digest, method=method, exact=exact)
    return version


class BaselineMismatch(Exception):
    """A version's stored utility baseline is not the one the audit chain recorded for it."""


def lineage_baseline_keep(*, base: ModelVersion, candidate: ModelVersion, baseline: dict[str, bool]) -> None:
    """Keep the lineage's utility baseline (:mod:`mllm.verify.baseline`) on ``base``, whose first
    verification measured it, and hand it on to ``candidate``; a version's baseline is never replaced.
    Each version that receives it gets a ``model_version.baseline_kept`` audit event with its digest
    (what :func:`lineage_baseline_checked` holds the stored row to)."""
    for version in (base, candidate):
        if baseline and not version.utility_baseline:
            unset = ModelVersion.objects.filter(pk=version.pk, utility_baseline={})
            if unset.update(utility_baseline=baseline):
                _audit(AuditAction.MODEL_VERSION_BASELINE_KEPT, version, PIPELINE,
                       baseline_digest=json_digest(baseline), items=len(baseline))
            version.utility_baseline = baseline


def lineage_baseline_checked(version: ModelVersion) -> dict[str, bool]:
    """``version``'s utility baseline, after checking it against the audit chain.

    The stored row must be exactly what the last ``model_version.baseline_kept`` event of the version
    recorded — and empty when there is none. A rewritten baseline (which could let a lineage's losses
    pass ``cumulative_utility``) and a wiped one (which would restart the lineage on a degraded
    model) both raise :class:`BaselineMismatch`; the verification must not run on it.
    """
    recorded = (AuditEvent.objects.filter(action=AuditAction.MODEL_VERSION_BASELINE_KEPT,
                                          object_type=OBJECT_TYPE, object_id=str(version.pk))
                .order_by("-seq").values_list("data", flat=True).first())
    expected = recorded.get("baseline_digest") if recorded else None
    stored = json_digest(version.utility_baseline) if version.utility_baseline else None
    if stored != expected:
        raise BaselineMismatch(
            f"the utility baseline stored on model version {version.pk} "
            + ("is not the one the audit chain recorded for it" if expected else
               "has no event in the audit chain: no verification measured it"))
    return dict(version.utility_baseline)


def _holds_forgotten(version: ModelVersion, forgotten: set[str]) -> bool:
    return bool(forgotten - set(version.forgotten_records))


def _serve(deployment: Deployment, version: ModelVersion, *, actor: Principal, action: AuditAction,
           reason: str) -> None:
    """Point ``deployment`` at ``version``, retire the old one, delete retired ones holding forgotten data."""
    now = timezone.now()
    previous = deployment.served
    if previous is not None:
        previous.status, previous.retired_at = VersionStatus.RETIRED, now
        previous.save(update_fields=["status", "retired_at"])
        deployment.served = None
        deployment.save(update_fields=["served", "updated_at"])
    version.status, version.served_at = VersionStatus.SERVED, now
    version.save(update_fields=["status", "served_at"])
    deployment.served = version
    deployment.save(update_fields=["served", "updated_at"])
    _audit(action, version, actor, reason=reason,
           previous_digest=previous.artifact_digest if previous else None)
    forgotten = set(version.forgotten_records)
    for old in deployment.versions.filter(status=VersionStatus.RETIRED):
        if _holds_forgotten(old, forgotten):
            _delete(old, actor=actor)


def _drop_artifact(version: ModelVersion) -> None:
    """Forget where the artifact is and remove it once the transaction commits."""
    key, version.storage_key = version.storage_key, ""
    if key and not ModelVersion.objects.filter(storage_key=key).exclude(pk=version.pk).exists():
        transaction.on_commit(lambda: artifact_storage().delete(key))


def _delete(version: ModelVersion, *, actor: Principal) -> None:
    _drop_artifact(version)
    version.status, version.deleted_at = VersionStatus.DELETED, timezone.now()
    version.save(update_fields=["status", "deleted_at", "storage_key"])
    _audit(AuditAction.MODEL_VERSION_DELETED, version, actor, reason="holds forgotten data")


def version_promote(*, job: UnlearningJob, candidate: ModelVersion, verification: VerificationRecord,
                    actor: Principal = PIPELINE) -> None:
    """Serve ``candidate``: only with its own passing report, only from the version it was made from.

    Call inside the certify transaction, with the deployment row locked.
    """
    if not verification.passed or verification.candidate_id != candidate.pk:
        raise Conflict("only a candidate with a passing verification report can be promoted",
                       code="verification_not_passed")
    deployment = Deployment.objects.select_for_update(no_key=True).get(pk=job.deployment_id)
    if deployment.served_id != candidate.parent_id:
        raise Conflict("the served model changed since the job was planned", code="served_model_changed")
    _serve(deployment, candidate, actor=actor, action=AuditAction.MODEL_VERSION_PROMOTED,
           reason=f"verified by report {verification.digest}")


def version_reject(*, candidate: ModelVersion, reason: str) -> None:
    """Mark a candidate that failed verification; its artifact is deleted (it was never served)."""
    _drop_artifact(candidate)
    candidate.status = VersionStatus.REJECTED
    candidate.save(update_fields=["status", "storage_key"])
    _audit(AuditAction.MODEL_VERSION_REJECTED, candidate, PIPELINE, reason=reason)


def version_rollback(*, deployment: str, version_id: str, actor: Principal, reason: str) -> ModelVersion:
    """Serve an earlier version again, unless it still holds data a certified request removed."""
    if not reason.strip():
        raise Invalid("a rollback needs a reason", field="reason", code="reason_text_required")
    with transaction.atomic():
        target = Deployment.objects.select_for_update(no_key=True).filter(name=deployment).first()
        version = ModelVersion.objects.filter(pk=version_id, deployment=target).first() if target else None
        if version is None:
            raise NotFound("no model version has this id in this deployment", field="version",
                           code="version_not_found")
        if version.status != VersionStatus.RETIRED:
            raise Conflict(f"only a retired version can be served again (this one is {version.status})",
                           field="version", code="version_not_retired")
        served = target.served
        if served is not None and _holds_forgotten(version, set(served.forgotten_records)):
            raise Conflict("this version still holds data that a certified request removed",
                           field="version", code="version_holds_forgotten_data")
        _serve(target, version, actor=actor, action=AuditAction.MODEL_VERSION_ROLLED_BACK,
               reason=reason)
    return version


def registry_purge_deleted() -> int:
    """Remove artifacts of deleted or rejected versions still present in the store (crash leftovers)."""
    storage = artifact_storage()
    gone = 0
    for version in ModelVersion.objects.filter(status__in=[VersionStatus.DELETED, VersionStatus.REJECTED]):
        key = version.artifact_digest
        in_use = ModelVersion.objects.filter(artifact_digest=key).exclude(
            status__in=[VersionStatus.DELETED, VersionStatus.REJECTED]).exists()
        if not in_use and storage.exists(key):
            storage.delete(key)
            gone += 1
    return gone
