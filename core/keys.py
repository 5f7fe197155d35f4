"""The deployment's keys as the database knows them: fingerprints recorded at the first migrate,
the start-up check that refuses a data directory holding other keys, and audited rotation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from . import signing
from .audit import AuditAction, audit_append, audit_checkpoint
from .home import IDENTIFIER_HMAC_KEY, oblivio_home, secret
from .models import DeploymentKey
from .principals import Principal

Purpose = DeploymentKey.Purpose


class KeyMismatchError(RuntimeError):
    """The keys in the data directory are not the ones this database was used with."""


def identifier_key_fingerprint() -> str:
    """Names the identifier HMAC key without revealing it (SHA-256 of a labelled copy, 16 hex)."""
    labelled = b"oblivio identifier-key fingerprint\0" + secret(IDENTIFIER_HMAC_KEY)
    return hashlib.sha256(labelled).hexdigest()[:16]


@dataclass(frozen=True)
class LocalKeys:
    """What this process finds in its data directory."""

    home: str
    identifier: str
    signing: str
    retired_signing: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"data_directory": self.home, "identifier_key": self.identifier,
                "signing_key": self.signing, "retired_signing_keys": list(self.retired_signing)}


def local_keys() -> LocalKeys:
    active = signing.active_key_id()
    return LocalKeys(home=str(oblivio_home()), identifier=identifier_key_fingerprint(), signing=active,
                     retired_signing=tuple(key for key in signing.public_keys() if key != active))


def record_fingerprints(**_: Any) -> None:
    """``post_migrate`` receiver: remember the keys the database is first migrated with."""
    keys = local_keys()
    with transaction.atomic():
        if not DeploymentKey.objects.filter(purpose=Purpose.IDENTIFIER).exists():
            DeploymentKey.objects.create(purpose=Purpose.IDENTIFIER, key_id=keys.identifier)
        if not DeploymentKey.objects.filter(purpose=Purpose.SIGNING).exists():
            DeploymentKey.objects.create(purpose=Purpose.SIGNING, key_id=keys.signing,
                                         public_key_pem=signing.public_key_pem(keys.signing))


def key_mismatch() -> str:
    """Why this process must not run against this database ('' when the keys agree or the
    database has recorded none yet)."""
    if DeploymentKey._meta.db_table not in connection.introspection.table_names():
        return ""
    recorded = {row.purpose: row.key_id for row in DeploymentKey.objects.filter(retired_at__isnull=True)}
    keys = local_keys()
    for purpose, found, what in ((Purpose.IDENTIFIER, keys.identifier, "identifier key"),
                                 (Purpose.SIGNING, keys.signing, "signing key")):
        if purpose in recorded and recorded[purpose] != found:
            return (f"the {what} in the data directory {keys.home} (fingerprint {found}) is not the one "
                    f"this database was set up with ({recorded[purpose]}). OBLIVIO_HOME probably points "
                    f"at another deployment's data directory: set it to this database's one (see "
                    f"`oblivio doctor`) or restore its secrets/ from backup. Refusing to start.")
    return ""


def check_deployment_keys() -> None:
    """Raise :class:`KeyMismatchError` when :func:`key_mismatch` finds a problem."""
    problem = key_mismatch()
    if problem:
        raise KeyMismatchError(problem)


def signing_key_rotate(*, actor: Principal) -> tuple[str, str]:
    """Sign with a new key from now on: ``(retired_id, new_id)``, audited and checkpointed.

    The retired public key stays in the registry (files and database) so old signatures verify.
    Call it outside a transaction (``oblivio keys rotate`` does): the files change at once.
    """
    retired, new = signing.rotate_key()
    try:
        with transaction.atomic():
            DeploymentKey.objects.filter(purpose=Purpose.SIGNING, retired_at__isnull=True).update(
                retired_at=timezone.now())
            DeploymentKey.objects.create(purpose=Purpose.SIGNING, key_id=new,
                                         public_key_pem=signing.public_key_pem(new))
            audit_append(actor=actor, action=AuditAction.SIGNING_KEY_ROTATED, object_type="signing_key",
                         object_id=new, data={"retired": retired})
    except BaseException:
        signing.reactivate(retired)
        raise
    signing.discard_private_key(retired)
    audit_checkpoint()  # the rotation event is signed by the new key at once
    return retired, new
