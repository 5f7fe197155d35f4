"""The unlearning pipeline: model registry, jobs (unlearn → verify → certify), certificates, guard."""

from core.principals import Principal, PrincipalKind

#: Who the audit chain names for work the pipeline and the inference guard do on their own.
PIPELINE = Principal(name="system:pipeline", roles=frozenset(), institution_ids=None,
                     kind=PrincipalKind.SYSTEM)
GUARD = Principal(name="system:guard", roles=frozenset(), institution_ids=None, kind=PrincipalKind.SYSTEM)

#: The audit chain's object type of unlearning jobs.
JOB_OBJECT_TYPE = "unlearning_job"
