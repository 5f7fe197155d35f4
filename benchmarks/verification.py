"""Verification benchmark: time of a verification, and the confusion table of the verdict over the
calibration candidates (retrain oracle and the broken ones of ``mllm.verify.calibration``).

    .venv/bin/python benchmarks/verification.py [--size tiny|demo|medforget] [--seeds 0 1 ..]
        [--targets patient study institution FINDINGS ..] [--model-size tiny] [--replay 60]

Per seed: generate the corpus and train the original (all trainable records) from a fresh
reference at the testbed's depth mix. Per target (``--targets``, default ``patient``: the first
train patient with two or more studies; ``sibling-study``: its first study, the others kept; other
levels and section kinds are the unlearning benchmark's seeded picks): resolve its scope, train the
retrain oracle (all but the forget set) with the same recipe, save it as a model directory, then

* time ``verify`` of the oracle **from the directories** (loading included), as ``oblivio verify``
  runs it, with the per-attack split (what dominates; the 60 s target is for a patient);
* build every calibration candidate that applies to the target (``applicable``: an institution has no
  sibling to damage) and verify it; a candidate is *detected* when the verdict fails and every check
  of its failure mode fails (``EXPECTED_FAILURES``); the oracle must pass;
* run the ``hierarchy`` method with its default configuration (the pipeline's first rung) on the
  original and verify it: a passing unlearner, which must pass too (``HIERARCHY``; when the collapse
  guard refuses it, the row says so);
* climb the pipeline's approximate rungs (``mllm.unlearn.ladder``, ``exact`` left out) as a job does:
  the next rung only when the previous one is refused or fails verification (``LADDER``: the verdict
  of the last rung tried, and which rung that was). Rung *r* runs with seed *world seed + r*.

``--reuse-models`` loads the corpus, original and oracles an earlier run saved instead of training
them (to re-measure a change of the verifier on the same worlds); candidates and rungs are rebuilt.
``--hierarchy-only`` skips the oracle and the candidates and runs just the last two steps (to re-measure
the method after a change: the other candidates do not depend on it); it writes
``result-hierarchy.json`` and no docs section.

Writes ``bench-out/verification/<size>/result.json``, every report
(``seed<N>/<target>/reports/<candidate>.json``, attack tables included) and the
``verification <size>`` section of ``docs/benchmarks.md`` (confusion table over every seed and
target, margins between thresholds and measured values).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from docs_section import replace_section
from unlearning import pick_targets

from mllm.data.schema import Corpus, Section, load_corpus
from mllm.data.scope import NodeRef, resolve_scope
from mllm.data.synth import generate_corpus
from mllm.models.loader import LoadedModel, load_model
from mllm.models.specs import SPECS
from mllm.train.loop import TrainConfig
from mllm.unlearn import CollapseError, unlearn
from mllm.unlearn.ladder import DEFAULT_LADDER
from mllm.verify import VerdictPolicy, VerificationReport, subject, verify
from mllm.verify.calibration import (
    CANDIDATES,
    EXPECTED_FAILURES,
    PASSING,
    applicable,
    build_candidate,
    in_memory,
    train_reference,
)
from mllm.verify.context import Subject

REPO = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 60
HIERARCHY = "hierarchy (default config)"
LADDER = "hierarchy (pipeline ladder)"
APPROXIMATE_RUNGS = [rung for rung in DEFAULT_LADDER if rung["method"] != "exact"]
MUST_PASS = (PASSING, HIERARCHY, LADDER)


def patient_node(corpus: Corpus) -> NodeRef:
    """The first train patient with at least two studies (so a patient has children and siblings)."""
    studies: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record in corpus.select(trainable=True):
        studies[record.institution_id, record.patient_id].add(record.study_id)
    institution, patient = next((key for key, ids in studies.items() if len(ids) >= 2), next(iter(studies)))
    return NodeRef(institution, patient)


def detected(name: str, report: VerificationReport) -> bool:
    if name in MUST_PASS:
        return report.passed
    must_fail, _ = EXPECTED_FAILURES[name]
    return not report.passed and must_fail <= {c.name for c in report.failed}


def expected_verdict(name: str) -> str:
    return "pass" if name in MUST_PASS else "fail"


def sibling_study_node(corpus: Corpus) -> NodeRef:
    """The first study of :func:`patient_node`'s patient, whose other studies stay: a study with
    sibling studies (the seeded ``study`` pick may be a patient's only study)."""
    patient = patient_node(corpus)
    study = min(r.study_id for r in corpus.select(trainable=True)
                if (r.institution_id, r.patient_id) == (patient.institution_id, patient.patient_id))
    return NodeRef(patient.institution_id, patient.patient_id, study)


def target_node(corpus: Corpus, kind: str, seed: int) -> NodeRef:
    """The node of the target ``kind``: the patient of :func:`patient_node` or its first study
    (``sibling-study``), otherwise the unlearning benchmark's seeded pick for that level or section
    kind."""
    if kind == "patient":
        return patient_node(corpus)
    return sibling_study_node(corpus) if kind == "sibling-study" else pick_targets(corpus, 1, seed, [kind])[0]


def trained(args: argparse.Namespace, corpus: Corpus, records: list, config: TrainConfig,
            where: Path) -> tuple[LoadedModel, bool]:
    """A reference trained on ``records`` and saved at ``where`` or, with ``--reuse-models``, the one
    an earlier run saved there (its verifier code may differ; its training recipe must not); and
    whether it was reused."""
    if args.reuse_models and where.exists():
        saved = load_model(where)
        return in_memory(saved.model, saved.processor, corpus), True
    model = train_reference(corpus, records, SPECS[args.model_size], config, replay=args.replay)
    model.model.save_pretrained(where)
    model.processor.save_pretrained(where)
    return model, False


def run_seed(args: argparse.Namespace, seed: int, out: Path) -> list[dict]:
    """Train the original once, then verify every target's candidates (one row per target)."""
    work = out / f"seed{seed}"
    if args.reuse_models and (work / "corpus").exists():
        corpus = load_corpus(work / "corpus")
    else:
        shutil.rmtree(work, ignore_errors=True)
        corpus = generate_corpus(size=args.size, seed=seed, out=work / "corpus")
    config = TrainConfig(epochs=args.epochs, batch_size=16, lr=args.lr, seed=seed, depth_draw=args.depth_draw)
    started = time.perf_counter()
    original, reused = trained(args, corpus, corpus.select(trainable=True), config, work / "original")
    train_seconds = time.perf_counter() - started
    reference = subject("original", original)  # read once for every candidate of every target
    return [
        run_target(args, seed, kind, corpus, original, reference, work, config, train_seconds, reused)
        for kind in args.targets
    ]


def run_target(
    args: argparse.Namespace,
    seed: int,
    kind: str,
    corpus: Corpus,
    original: LoadedModel,
    reference: Subject,
    work: Path,
    config: TrainConfig,
    original_seconds: float,
    original_reused: bool,
) -> dict:
    """The oracle of one target (all trainable records but its forget set, same recipe as the
    original), every calibration candidate and a ``hierarchy`` run, each verified."""
    scope = resolve_scope(corpus, target_node(corpus, kind, seed))
    forget_ids = {r.record_id for r in scope.forget}
    target = work / kind
    started = time.perf_counter()
    oracle, reused = None, original_reused
    if not args.hierarchy_only:
        retain = [r for r in corpus.select(trainable=True) if r.record_id not in forget_ids]
        oracle, oracle_reused = trained(args, corpus, retain, config, target / "oracle")
        reused = reused and oracle_reused
    train_seconds = original_seconds + time.perf_counter() - started
    policy = VerdictPolicy(seed=seed)

    reports = target / "reports"
    shutil.rmtree(reports, ignore_errors=True)
    reports.mkdir(parents=True)

    def row(report: VerificationReport, name: str, judged_as: str | None = None) -> dict:
        failed = [c.name for c in report.failed]
        print(f"seed {seed} {kind} {name}: {report.verdict} {failed}", flush=True)
        slug = "".join(ch if ch.isalnum() else "-" for ch in name).strip("-")
        (reports / f"{slug}.json").write_text(json.dumps(report.to_json(), indent=1), encoding="utf-8")
        return {
            "passed": report.passed,
            "verdict": report.verdict,
            "detected": detected(judged_as or name, report),
            "failed": failed,
            "checks": {
                c.name: {
                    "value": c.value,
                    "threshold": c.threshold,
                    "comparison": c.comparison,
                    "passed": c.passed,
                }
                for c in report.checks
            },
        }

    rows = {}
    result = {"seed": seed, "target": kind, "scope_counts": {k: len(v) for k, v in scope.groups().items()},
              "train_seconds": round(train_seconds, 1), "models_reused": reused,
              "candidates": rows}
    if not args.hierarchy_only:
        started = time.perf_counter()
        timed = verify(
            original=work / "original", candidate=target / "oracle", corpus=corpus, scope=scope, policy=policy
        )
        result.update(verify_seconds=round(time.perf_counter() - started, 1),
                      verify_split_seconds=timed.timing, oracle_from_dirs_passed=timed.passed)
        for name in [n for n in CANDIDATES if applicable(n, scope)]:
            candidate = build_candidate(name, corpus=corpus, scope=scope, original=original, oracle=oracle)
            rows[name] = row(
                verify(original=reference, candidate=candidate, corpus=corpus, scope=scope, policy=policy),
                name,
            )
    tried = []
    for index, rung in enumerate(APPROXIMATE_RUNGS):
        name = f"{HIERARCHY} rung {index}"
        shutil.rmtree(target / f"rung{index}", ignore_errors=True)  # an earlier run's (--reuse-models)
        try:
            unlearn(model_dir=work / "original", corpus=corpus, scope=scope, method=rung["method"],
                    config=rung["config"], out=target / f"rung{index}", seed=seed + index)
            outcome = row(verify(original=reference, candidate=target / f"rung{index}", corpus=corpus,
                                 scope=scope, policy=policy), name, judged_as=HIERARCHY)
        except CollapseError as exc:
            print(f"seed {seed} {kind} {name}: refused by the collapse guard ({exc})", flush=True)
            outcome = {"passed": False, "verdict": "fail", "detected": False, "failed": ["collapse guard"],
                       "checks": {}}
        tried.append(f"rung {index}: " + ("pass" if outcome["passed"] else ", ".join(outcome["failed"])))
        if index == 0:
            rows[HIERARCHY] = outcome
        if outcome["passed"]:
            break
    rows[LADDER] = {**outcome, "failed": [] if outcome["passed"] else tried, "rung": index, "tried": tried}
    return result


def margins(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Per check: the smallest distance to its threshold on the passing side over every candidate
    that must pass it (the oracle, and the must-not-fail checks), and the largest distance on the
    failing side over the candidates whose failure mode it is."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for result in runs:
        for name, row in result["candidates"].items():
            must_fail, must_pass = EXPECTED_FAILURES.get(name, (frozenset(), frozenset(row["checks"])))
            for check, c in row["checks"].items():
                if c["value"] is None or c["value"] != c["value"]:
                    continue
                signed = (
                    (c["threshold"] - c["value"])
                    if c["comparison"] == "<="
                    else (c["value"] - c["threshold"])
                )
                if check in must_pass:
                    out[check]["min_pass_margin"] = round(
                        min(out[check].get("min_pass_margin", 9.0), signed), 3
                    )
                if check in must_fail:
                    out[check]["max_fail_margin"] = round(
                        max(out[check].get("max_fail_margin", -9.0), -signed), 3
                    )
    return dict(sorted(out.items()))


def section_name(result: dict) -> str:
    """The docs section of a run: one per corpus size, and one per other choice of targets."""
    targets, replay = result["targets"], result.get("replay", 0)
    per_epoch = result.get("depth_draw") == "per-epoch"
    return (f"verification {result['size']}" + ("" if targets == ["patient"] else f" {' '.join(targets)}")
            + (f" replay {replay}" if replay else "") + (" per-epoch" if per_epoch else ""))


def markdown(result: dict) -> str:
    runs = result["runs"]
    lines = [
        f"<!-- BEGIN {section_name(result)} -->",
        f"## Verification ({result['size']} corpus, seeds {result['seeds']}, targets {result['targets']}, "
        f"`{result['model_size']}` model"
        + (f", {result['replay']} teaching-file cases replayed" if result.get("replay") else "")
        + (", context depths drawn anew every epoch)" if result.get("depth_draw") == "per-epoch" else ")"),
        "",
        f"Reproduce: `{result['command']}`  ",
        f"Machine: {result['machine']}; load average before "
        f"{result['load_before']}, after {result['load_after']} (the run itself keeps it near its thread "
        "count; more means other work shared the cores).",
        "",
        "| seed | target | forget / holdout items | train original + oracle | verify (from dirs) | "
        "dominant attack |",
        "|---|---|---|---|---|---|",
    ]
    for s in runs:
        split = s["verify_split_seconds"]
        top = max(split, key=split.get)
        goal = f" (target {TARGET_SECONDS} s)" if s["target"] == "patient" else ""
        counts = s["scope_counts"]
        training = "reused (--reuse-models)" if s.get("models_reused") else f"{s['train_seconds']:.0f} s"
        lines.append(
            f"| {s['seed']} | {s['target']} | {counts['forget']} / {counts['holdout']} | "
            f"{training} | {s['verify_seconds']:.1f} s{goal} | {top} {split[top]:.1f} s |"
        )
    lines += [
        "",
        "Confusion table (right verdict = fails, or for the oracle and the hierarchy run passes; an "
        "*inconclusive* verdict — fewer forgotten facts than `min_forget_facts` — is neither: the pipeline "
        "sends it to the exact rung; failure mode caught = the verdict fails *and* every check of the "
        "candidate's failure mode fails):",
        "",
        "| candidate | expected | pass / inconclusive / fail | right verdict | failure mode caught | "
        f"failed checks (seed {runs[0]['seed']}, {runs[0]['target']}) |",
        "|---|---|---|---|---|---|",
    ]
    for name in (*CANDIDATES, HIERARCHY, LADDER):
        rows = [s["candidates"][name] for s in runs if name in s["candidates"]]  # applicable runs only
        verdicts = [row["verdict"] for row in rows]
        counts = "/".join(str(verdicts.count(v)) for v in ("pass", "inconclusive", "fail"))
        right = verdicts.count(expected_verdict(name))
        hits = sum(row["detected"] for row in rows)
        expected = "pass" if name in MUST_PASS else "fail: " + ", ".join(sorted(EXPECTED_FAILURES[name][0]))
        first = runs[0]["candidates"].get(name)
        if first is None:
            shown = "n/a"
        else:
            shown = ("; ".join(first["tried"]) if "tried" in first else ", ".join(first["failed"])) or "-"
        lines.append(f"| {name} | {expected} | {counts} | {right}/{len(rows)} | {hits}/{len(rows)} | "
                     f"{shown} |")
    lines += ["", "By seed and target (wrong and inconclusive verdicts named):", "",
              "| seed | target | right verdicts | wrong | inconclusive |", "|---|---|---|---|---|"]
    for s in runs:
        verdicts = {name: row["verdict"] for name, row in s["candidates"].items()}
        wrong = [name for name, v in verdicts.items() if v not in (expected_verdict(name), "inconclusive")]
        unsure = [name for name, v in verdicts.items() if v == "inconclusive"]
        right = f"{len(verdicts) - len(wrong) - len(unsure)}/{len(verdicts)}"
        lines.append(f"| {s['seed']} | {s['target']} | {right} | {', '.join(wrong) or '-'} | "
                     f"{', '.join(unsure) or '-'} |")
    lines += [
        "",
        "Margins (threshold distance; pass side: min over candidates that must pass the check, "
        "fail side: max over candidates it must catch):",
        "",
        "| check | min pass margin | max fail margin |",
        "|---|---|---|",
    ]
    for check, m in result["margins"].items():
        lines.append(f"| {check} | {m.get('min_pass_margin', '-')} | {m.get('max_fail_margin', '-')} |")
    lines.append(f"<!-- END {section_name(result)} -->")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["tiny", "demo", "medforget"], default="demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--targets", nargs="+", default=["patient"],
                        choices=["institution", "patient", "study", "sibling-study",
                                 *(s.value for s in Section)])
    parser.add_argument("--model-size", choices=sorted(SPECS), default="tiny")
    parser.add_argument("--epochs", type=float, default=30)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--replay", type=int, default=0,
                        help="public teaching-file cases mixed into the original's and the oracle's "
                             "fine-tune (the demo recipe replays 60)")
    parser.add_argument("--depth-draw", choices=["per-record", "per-epoch"], default="per-record",
                        help="the original's and the oracle's context depths: drawn once per record, or "
                             "anew every epoch (mllm.train.batches)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reuse-models", action="store_true",
                        help="load the corpus, original and oracles an earlier run of the same arguments "
                             "saved (re-measure a verifier change without retraining); train what is missing")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--hierarchy-only", action="store_true",
                        help="train the original alone and verify only the hierarchy run (no docs section)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = REPO / "bench-out" / "verification" / args.size
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    runs = [run for seed in args.seeds for run in run_seed(args, seed, out)]
    result = {
        "size": args.size,
        "model_size": args.model_size,
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {args.threads} threads",
        "load_before": [round(x, 1) for x in load_before],
        "load_after": [round(x, 1) for x in os.getloadavg()],
        "seeds": args.seeds,
        "targets": args.targets,
        "replay": args.replay,
        "depth_draw": args.depth_draw,
        "runs": runs,
        "margins": margins(runs),
    }
    if args.hierarchy_only:
        (out / "result-hierarchy.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    section = markdown(result)
    print(section)
    if not args.no_docs:
        replace_section(section_name(result), section)


if __name__ == "__main__":
    main()
