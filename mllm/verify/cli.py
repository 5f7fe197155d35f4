"""``oblivio verify``: judge a candidate model against a forget request's scope.

Exit status: 0 the candidate passes, 1 it fails (the report says which checks and why), 2 bad input
(unreadable corpus, scope, policy, baseline or model; an existing ``--out``). The scope names its node
in a file (identifiers never go on the command line); messages never echo identifiers.

A lineage of unlearned models is checked against what its first served model knew as the pipeline
does it: ``--save-baseline FILE`` on the first verification measures the utility baseline on
``--original`` (written only once the report is), ``--baseline FILE`` on every later one.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import click

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_INCONCLUSIVE = 0, 1, 2, 3


def _write_atomically(path: Path, text: str) -> None:
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def _bad_input(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


@click.command("verify")
@click.option(
    "--original", required=True, type=click.Path(path_type=Path), help="The model before unlearning."
)
@click.option("--candidate", required=True, type=click.Path(path_type=Path), help="The unlearned model.")
@click.option(
    "--corpus",
    "corpus_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="The training corpus of the original.",
)
@click.option(
    "--forget-file",
    required=True,
    type=click.Path(path_type=Path),
    help="SCOPE.json naming the node to forget.",
)
@click.option(
    "--earlier-forget-file",
    "earlier_files",
    multiple=True,
    type=click.Path(path_type=Path),
    help="SCOPE.json of a node an earlier job removed from this model's lineage (repeatable).",
)
@click.option(
    "--oracle",
    type=click.Path(path_type=Path),
    help="The original's retrain oracle without the forget set (an Oblivio artifact whose metadata shows "
    "it; benchmarks).",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(path_type=Path),
    help="JSON file overriding verdict thresholds.",
)
@click.option(
    "--baseline",
    "baseline_file",
    type=click.Path(path_type=Path),
    help="The lineage's utility baseline (from --save-baseline on its first served model): adds "
    "the cumulative_utility check.",
)
@click.option(
    "--save-baseline",
    "save_baseline",
    type=click.Path(path_type=Path),
    help="Measure the utility baseline on ORIGINAL (a lineage's first served model), write it here "
    "and check against it.",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Where to write REPORT.json.")
def verify_command(
    original: Path,
    candidate: Path,
    corpus_dir: Path,
    forget_file: Path,
    earlier_files: tuple[Path, ...],
    oracle: Path | None,
    policy_file: Path | None,
    baseline_file: Path | None,
    save_baseline: Path | None,
    out: Path,
) -> None:
    """Attack CANDIDATE and write the verification report; exit 0 pass, 1 fail, 2 bad input,
    3 inconclusive (too few forgotten facts for the weights to show it: exact retraining decides)."""
    from mllm.data.schema import CorpusError, load_corpus
    from mllm.models.loader import ModelLoadError, check_model_dir

    from . import PolicyError, VerdictPolicy, VerifyInputError, subject, verify
    from .baseline import BaselineFileError, read_baseline, utility_baseline
    from .testbed import ScopeFileError, load_scope

    if baseline_file and save_baseline:
        _bad_input("give --baseline or --save-baseline, not both")
    for path, what in ((out, "report"), *([(save_baseline, "baseline")] if save_baseline else [])):
        if path.exists():
            _bad_input(f"{path} already exists; choose a new {what} path")
        if not path.parent.is_dir():
            _bad_input(f"the directory of {path} does not exist")
    try:
        policy = VerdictPolicy.from_file(policy_file) if policy_file else VerdictPolicy()
        corpus = load_corpus(corpus_dir)
        scope = load_scope(corpus, forget_file, earlier_files)
        baseline = read_baseline(baseline_file, corpus) if baseline_file else None
        for path in (original, candidate, *([oracle] if oracle else [])):
            check_model_dir(path)
        reference = subject("original", original)
        if save_baseline:
            baseline = utility_baseline(reference, corpus, policy)
        report = verify(
            original=reference, candidate=candidate, corpus=corpus, scope=scope, oracle=oracle, policy=policy,
            baseline=baseline,
        )
    except (
        PolicyError, CorpusError, ScopeFileError, BaselineFileError, ModelLoadError, VerifyInputError
    ) as exc:
        _bad_input(str(exc))
        return
    if save_baseline:
        _write_atomically(save_baseline, json.dumps(baseline, indent=2, sort_keys=True) + "\n")
    _write_atomically(out, json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n")
    click.echo(f"{report.verdict.upper()}  report {out}  sha256 {report.digest()}")
    for check in report.failed:
        click.echo(
            f"  fail {check.name}: {check.value:.3f} (threshold {check.comparison} {check.threshold}) "
            f"— {check.diagnosis}"
        )
    laxer = [o["field"] for o in policy.overrides() if o["direction"] == "laxer"]
    if laxer:
        click.echo(f"  policy: laxer than the calibrated defaults on {', '.join(laxer)}")
    if report.verdict == "inconclusive":
        facts = min(c.forget_facts or 0 for c in report.inconclusive)
        click.echo(f"  inconclusive: {len(report.inconclusive)} forgetting checks rest on {facts} forgotten "
                   f"fact(s), fewer than the policy's min_forget_facts {policy.min_forget_facts}")
    sys.exit({"pass": EXIT_PASS, "fail": EXIT_FAIL, "inconclusive": EXIT_INCONCLUSIVE}[report.verdict])


COMMANDS: list[click.Command] = [verify_command]
