"""Health checks shared by ``GET /healthz`` and ``oblivio doctor``.

Each check returns a :class:`Check` with a message a person can act on; none raises.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import DatabaseError, connection

from core.keys import key_mismatch, local_keys

from .celery import QUEUES, app
from .tasks import health_probe


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _redact_url(url: str) -> str:
    """Drop credentials from a service URL before showing it."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def check_database() -> Check:
    vendor = connection.vendor
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "down"; the message says which
        return Check("database", False, f"{vendor} database unreachable: {exc.__class__.__name__}: "
                     f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
    return Check("database", True, f"{vendor} reachable")


def check_broker() -> Check:
    url = _redact_url(settings.CELERY_BROKER_URL)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=settings.CELERY_BROKER_CONNECTION_TIMEOUT)
    except Exception as exc:
        return Check("broker", False, f"broker {url} unreachable: {exc.__class__.__name__}: {exc}")
    return Check("broker", True, f"broker {url} reachable")


def check_workers() -> Check:
    """At least one live worker, and every required queue consumed by one."""
    try:
        replies = app.control.inspect(timeout=settings.OBLIVIO_WORKER_PING_TIMEOUT).active_queues()
    except Exception as exc:
        return Check("workers", False, f"cannot reach workers: {exc.__class__.__name__}: {exc}")
    if not replies:
        return Check("workers", False, "no live worker answered; start one with `oblivio worker`")
    consumed = {queue["name"] for queues in replies.values() for queue in queues}
    missing = [name for name in QUEUES if name not in consumed]
    if missing:
        return Check("workers", False, f"{len(replies)} worker(s) live but no worker consumes "
                     f"queue(s): {', '.join(missing)}")
    return Check("workers", True, f"{len(replies)} worker(s) live, queues {', '.join(sorted(consumed))}")


def check_roundtrip(timeout: float = 20.0) -> Check:
    """Send a probe task to every required queue and wait for each answer."""
    try:
        results = {queue: health_probe.apply_async(queue=queue) for queue in QUEUES}
        answers = {queue: result.get(timeout=timeout) for queue, result in results.items()}
    except Exception as exc:
        return Check("roundtrip", False, f"probe task did not come back: {exc.__class__.__name__}: "
                     f"{exc}")
    wrong = [q for q, answer in answers.items() if answer.get("queue") != q]
    if wrong:
        return Check("roundtrip", False, f"probe for {', '.join(wrong)} delivered on another queue")
    return Check("roundtrip", True, f"probe tasks answered on {', '.join(QUEUES)}")


def check_keys() -> Check:
    """The data directory's keys are the ones the database was set up with."""
    try:
        problem = key_mismatch()
        keys = local_keys()
    except Exception as exc:
        return Check("keys", False, f"cannot compare keys: {exc.__class__.__name__}: {exc}")
    if problem:
        return Check("keys", False, problem)
    return Check("keys", True, f"data directory {keys.home}; identifier key {keys.identifier}; "
                 f"signing key {keys.signing}" + (f" (retired: {', '.join(keys.retired_signing)})"
                                                  if keys.retired_signing else ""))


def check_policies() -> Check:
    """The deployment's default pipeline policy and every institution's, as the engine would read them
    (``oblivio doctor`` only: the ML engine's imports are too slow for ``/healthz``)."""
    from compliance.errors import Invalid
    from compliance.models import PipelinePolicy
    from compliance.pipeline.engine import EngineError, engine
    from compliance.pipeline.policy import check_ladder

    try:
        policies = [("default", settings.OBLIVIO_UNLEARN_LADDER, settings.OBLIVIO_VERDICT_THRESHOLDS),
                    *((row.institution.code, row.ladder, row.thresholds)
                      for row in PipelinePolicy.objects.select_related("institution"))]
    except DatabaseError as exc:
        return Check("policies", False, f"cannot read the institutions' policies ({exc.__class__.__name__}; "
                                        "migrations not applied?)")
    for owner, ladder, thresholds in policies:
        try:
            engine().check_policy(ladder=check_ladder(ladder), thresholds=thresholds)
        except (EngineError, Invalid) as exc:
            return Check("policies", False, f"{owner}: {exc}")
    return Check("policies", True, f"{len(policies)} pipeline policies valid (default and per institution)")


def run_checks(*, roundtrip: bool = False) -> list[Check]:
    """The health checks in order: database, keys, broker, workers (and a task round trip if asked)."""
    checks = [check_database()]
    checks.append(check_keys() if checks[-1].ok else Check("keys", False, "skipped: database unreachable"))
    checks.append(check_broker())
    checks.append(check_workers() if checks[-1].ok else
                  Check("workers", False, "skipped: broker unreachable"))
    if roundtrip:
        checks.append(check_roundtrip() if checks[-1].ok else
                      Check("roundtrip", False, "skipped: no live worker"))
    return checks
