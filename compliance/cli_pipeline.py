"""``oblivio certificate``, ``oblivio model`` and ``oblivio policy`` commands. Thin: parse, call one
service, print.

``oblivio certificate verify`` needs no database and no network: it checks the signed statement
against the given public key(s) (or this data directory's key) and the embedded report's digest.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import click


def _setup() -> None:
    from core.bootstrap import setup_django

    setup_django()


@click.group()
def certificate() -> None:
    """Verify and export signed unlearning certificates."""


@certificate.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--public-key", "public_keys", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM public key to trust (repeatable; default: this data directory's key).")
@click.option("--request-id", help="Reject a certificate issued for any other request.")
@click.option("--model-digest", help="Reject a certificate naming any other served model (SHA-256).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def certificate_verify_command(file: Path, public_keys: tuple[Path, ...], request_id: str | None,
                               model_digest: str | None, as_json: bool) -> None:
    """Check a certificate offline; exit 1 when anything was changed or does not match."""
    from .attestation import certificate_check, load_public_pem, public_key_id

    try:
        pems = [path.read_bytes() for path in public_keys]
        if not pems:  # this data directory's key registry (active and retired keys)
            from core import signing

            pems = [pem.encode() for pem in signing.public_keys().values()]
        keys = {public_key_id(key): key for key in map(load_public_pem, pems)}
    except ValueError as exc:
        raise click.ClickException(f"public key: {exc}") from None
    try:
        bundle = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise click.ClickException(f"{file.name}: not a JSON certificate") from None
    check = certificate_check(bundle, keys=keys, request_id=request_id, model_after=model_digest)
    if as_json:
        click.echo(json.dumps(check.as_dict(), indent=2))
    elif check.ok:
        request = check.predicate["request"]
        click.echo(f"ok: certificate of request {request['id']} "
                   f"({request['regulation']}, {request['level']}), "
                   f"signed by key {check.key_id}; model after {check.subject_digest('model/after')}")
    else:
        click.echo("REJECTED: " + "; ".join(check.problems))
    if not check.ok:
        sys.exit(1)


@certificate.command("export")
@click.argument("request_id", type=click.UUID)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for certificate.json, certificate.pdf and key.pem.")
def certificate_export_command(request_id: uuid.UUID, out: Path) -> None:
    """Write the certificate of a certified request (JSON and PDF) and the public key that signed it:
    what an auditor needs for the PDF's ``oblivio certificate verify certificate.json --public-key
    key.pem``, run in that directory."""
    _setup()
    from core import signing

    from .models import Certificate

    certificate = Certificate.objects.filter(request_id=request_id).first()
    if certificate is None:
        raise click.ClickException("no certificate for this request (not certified yet?)")
    pem = signing.public_keys().get(certificate.key_id)
    if pem is None:
        raise click.ClickException(f"the signing key {certificate.key_id} is not in this data directory's "
                                   "key registry; nothing written")
    out.mkdir(parents=True, exist_ok=True)
    (out / "certificate.json").write_text(json.dumps(certificate.bundle, indent=2), encoding="utf-8")
    (out / "certificate.pdf").write_bytes(bytes(certificate.pdf))
    (out / "key.pem").write_text(pem, encoding="utf-8")
    click.echo(f"wrote certificate.json, certificate.pdf and key.pem (key {certificate.key_id}) to {out}")


@click.group()
def model() -> None:
    """The model registry: register a trained model, list versions."""


@model.command("register")
@click.option("--artifact", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--corpus", "corpus_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="The (ingested) corpus the model was trained on.")
@click.option("--deployment", default=None, help="Deployment name (default: OBLIVIO_MODEL_DEPLOYMENT).")
@click.option("--serve/--no-serve", default=True, show_default=True)
def model_register_command(artifact: Path, corpus_dir: Path, deployment: str | None, serve: bool) -> None:
    """Register a trained model of an ingested corpus (and serve it)."""
    _setup()
    from django.conf import settings

    from core.principals import cli_principal
    from hierarchy.selectors import corpus_by_digest
    from mllm.data.schema import CorpusError, load_corpus

    from .errors import ComplianceError
    from .pipeline.registry import model_version_register

    try:
        header = load_corpus(corpus_dir).header
    except CorpusError as exc:
        raise click.ClickException(str(exc)) from None
    corpus = corpus_by_digest(records_sha256=header.records_sha256)
    if corpus is None:
        raise click.ClickException("this corpus is not ingested; run `oblivio ingest` first")
    try:
        version = model_version_register(deployment=deployment or settings.OBLIVIO_MODEL_DEPLOYMENT,
                                         artifact_dir=artifact, corpus=corpus, corpus_root=corpus_dir,
                                         actor=cli_principal(), serve=serve)
    except ComplianceError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"registered {version.pk} digest {version.artifact_digest[:12]} ({version.status})")


@model.command("list")
def model_list_command() -> None:
    """Versions of every deployment, newest last."""
    _setup()
    from .models import ModelVersion

    for version in ModelVersion.objects.select_related("deployment").order_by("created_at"):
        click.echo(f"{version.deployment.name:<12} {version.pk} {version.artifact_digest[:12]} "
                   f"{version.status:<9} {version.method or '-':<8} parent "
                   f"{version.parent.artifact_digest[:12] if version.parent else '-'}")


@click.group()
def policy() -> None:
    """An institution's pipeline policy: method ladder, verdict thresholds, inference guard."""


def _json_option(value: str, what: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        raise click.ClickException(f"--{what}: not valid JSON") from None


def _institution(code: str) -> Any:
    from hierarchy.models import Institution

    row = Institution.objects.filter(code=code).first()
    if row is None:
        raise click.ClickException(f"no institution with code {code!r}")
    return row


@policy.command("set")
@click.argument("institution")
@click.option("--ladder", required=True,
              help='JSON list of rungs, e.g. \'[{"method": "hierarchy"}, {"method": "exact"}]\'.')
@click.option("--thresholds", default="{}", show_default=True,
              help="JSON object of verdict-policy overrides (`oblivio verify --policy` fields).")
@click.option("--guard-stays-on/--guard-off-after", default=False, show_default=True,
              help="Keep refusing in-scope prompts after certification (defence in depth).")
def policy_set_command(institution: str, ladder: str, thresholds: str, guard_stays_on: bool) -> None:
    """Choose an institution's policy for jobs planned from now on; a rung method, method setting or
    threshold the pipeline would refuse is refused here (exit 1, nothing stored)."""
    _setup()
    from core.principals import cli_principal

    from .errors import ComplianceError
    from .pipeline.policy import policy_set

    try:
        policy_set(institution=_institution(institution), ladder=_json_option(ladder, "ladder"),
                   thresholds=_json_option(thresholds, "thresholds"), guard_stays_on=guard_stays_on,
                   actor=cli_principal())
    except ComplianceError as exc:
        raise click.ClickException(f"{exc.message} [{exc.code}]") from None
    click.echo(f"policy of {institution} set (applies to jobs planned from now on)")


@policy.command("show")
@click.argument("institution")
def policy_show_command(institution: str) -> None:
    """Print the policy jobs of this institution are planned with (its own, else the default)."""
    _setup()
    from .pipeline.policy import policy_for

    click.echo(json.dumps(policy_for(_institution(institution)).as_json(), indent=2))


COMMANDS: list[click.Command] = [certificate, model, policy]
