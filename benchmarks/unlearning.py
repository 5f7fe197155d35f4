"""Unlearning benchmark: every method against the retrain oracle, per forget target, in one run.

    .venv/bin/python benchmarks/unlearning.py --size demo [--seeds 0 1 2] [--targets 8] \\
        [--methods ga graddiff kl npo siu hierarchy chip exact] [--spec small] [--epochs 25] [--greedy]

For each seed: synthesise the corpus, fine-tune the reference model on it (the ``oblivio train`` job,
training prompts at the documented depth mix), pick forget targets at every level (institution,
patient, study, and one section node per section kind, in a seeded order), and for each target train
the **retrain oracle** (same clean start and recipe, forget records excluded) and run every method
through :func:`mllm.unlearn.unlearn`. Each model is scored on the target's groups — forget private
/ image-grounded facts, children, siblings per level, shared facts, far retain, never-trained holdout
twins, eval-only forms, and reconstruction (forget private facts asked at context depth 0-4) — with
teacher-forced exact match (``--greedy``: greedy decoding). ``exact`` trains one sharded model per
seed and reports the utility cost of sharding against the single model.

Targets (issue "Unlearning methods"): forget private within 2 points of the oracle; reconstruction at
every depth and on held-out forms <= oracle + 2 points; siblings, shared, retain >= 98 % of the
original; forget image-grounded within 2 points of the oracle; time <= 5 % of the oracle's training.
``--oracle-twin`` retrains each target's oracle a second time (next seed) and judges the methods a
second time against the spread of the two retrainings (the within / at-most targets widen to the span
between them): two retrainings land up to 11 points apart on these scopes.

Writes ``bench-out/unlearning/<size>-seeds<..>/result.json`` and the ``unlearning <size> seeds <..>
[<kinds>]`` section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from docs_section import replace_section

from mllm.data.prompts import DEPTHS, render_prompt
from mllm.data.schema import Corpus, FactKind, Level, Record, load_corpus
from mllm.data.scope import NodeRef
from mllm.data.synth import generate_corpus
from mllm.evaluate.generate import greedy_answers, teacher_forced_answers
from mllm.evaluate.metrics import exact_match
from mllm.models.loader import load_model
from mllm.models.specs import SPECS
from mllm.train.loop import TrainConfig
from mllm.train.recipe import TrainJob, run_train_job
from mllm.unlearn import METHODS, CollapseError, unlearn
from mllm.unlearn.registry import method_class
from mllm.unlearn.scope import ScopeGroups, forget_records, kept_groups, resolve_scope
from mllm.unlearn.shards import ShardConfig, load_sharded, train_sharded

REPO = Path(__file__).resolve().parent.parent
POINTS = 0.02
OTHER_ORACLE = "oracle (next seed)"  # the --oracle-twin row
HEADERS = {"verdict": "targets met", "verdict_spread": "targets met (retrain spread)"}


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__}


def pick_targets(corpus: Corpus, count: int, seed: int, kinds: list[str] | None = None) -> list[NodeRef]:
    """One node per level and section kind (institution, patient, study, each section), seeded;
    ``kinds`` (level or section names) restricts and orders them."""
    records = sorted(corpus.select(trainable=True),
                     key=lambda r: hashlib.sha256(f"{seed}:{r.record_id}".encode()).hexdigest())
    wanted = [Level.INSTITUTION, Level.PATIENT, Level.STUDY]
    wanted += sorted({r.section for r in records if r.section is not None and r.owner_level is Level.SECTION})
    targets = []
    for kind in wanted:
        level = kind if isinstance(kind, Level) else Level.SECTION
        record = next(r for r in records if (level is not Level.SECTION or r.section == kind)
                      and r.owner_level is level)
        targets.append((kind.value, NodeRef.of(record, level)))
    if kinds:
        targets = sorted((t for t in targets if t[0] in kinds), key=lambda t: kinds.index(t[0]))
    return [node for _, node in targets][:count]


def groups_of(scope: ScopeGroups) -> dict[str, list[Record]]:
    forget = forget_records(scope)
    children = {r.record_id for r in scope.children}
    groups = {"forget_private": [r for r in forget if r.fact_kind is FactKind.PRIVATE],
              "forget_grounded": [r for r in forget if r.fact_kind is FactKind.IMAGE_GROUNDED],
              "children": [r for r in forget if r.record_id in children],
              "forget_forms": [r for r in scope.forget_forms if r.fact_kind is FactKind.PRIVATE],
              "holdout_private": [r for r in scope.holdout if r.fact_kind is FactKind.PRIVATE],
              **kept_groups(scope)}
    return {name: records for name, records in groups.items() if records}


def accuracy(model: Any, processor: Any, root: Path, records: list[Record], depth: int,
             greedy: bool) -> float:
    from mllm.train.encode import encode_records

    data = encode_records(processor, records, root, prompts=[render_prompt(r, depth) for r in records])
    answers = (greedy_answers(model, processor, data, max_new_tokens=48) if greedy
               else teacher_forced_answers(model, processor, data))
    return sum(exact_match(r.task, a, r.answer) for r, a in zip(records, answers, strict=True)) / len(records)


def score(model: Any, processor: Any, root: Path, scope: ScopeGroups, greedy: bool) -> dict[str, float]:
    groups = groups_of(scope)
    scores = {name: accuracy(model, processor, root, records, 0, greedy) for name, records in groups.items()}
    if "forget_private" in groups:  # a FINDINGS section owns image-grounded facts only
        for depth in DEPTHS[1:]:
            private = groups["forget_private"]
            scores[f"reconstruct@{depth}"] = accuracy(model, processor, root, private, depth, greedy)
        scores["reconstruct@0"] = scores["forget_private"]
    return scores


def verdict(row: dict[str, float], oracles: list[dict[str, float]], original: dict[str, float],
            timed: bool = True) -> dict[str, bool]:
    """The issue's targets for one method on one target (those that apply: a target without private
    facts has no private or reconstruction target, one without image-grounded facts no grounded one;
    ``timed=False``: no time target, for a second oracle). With one oracle the "within 2 points"
    targets are the issue's; with several (``--oracle-twin``) a method must land within 2 points of
    the spread of the retrainings — the span in which a retraining itself lands."""
    def low(key: str) -> float:
        return min(o[key] for o in oracles) - POINTS

    def high(key: str) -> float:
        return max(o[key] for o in oracles) + POINTS

    kept = [k for k in original if k.startswith("siblings.") or k in ("shared", "retain")]
    checks = {}
    if "forget_private" in row:
        checks["forget_private_within_2pts"] = low("forget_private") <= row["forget_private"] <= high(
            "forget_private")
        checks["reconstruction_le_oracle"] = all(row[f"reconstruct@{d}"] <= high(f"reconstruct@{d}")
                                                 for d in DEPTHS)
    if "forget_forms" in row:
        checks["forms_le_oracle"] = row["forget_forms"] <= high("forget_forms")
    if "forget_grounded" in row:
        checks["grounded_within_2pts"] = low("forget_grounded") <= row["forget_grounded"] <= high(
            "forget_grounded")
    checks["kept_ge_98pct"] = all(row[k] >= 0.98 * original[k] for k in kept)
    if timed:
        checks["time_le_5pct"] = row["time_ratio"] <= 0.05
    return checks


def other_oracle(args: argparse.Namespace, corpus: Corpus, scope: ScopeGroups, config: TrainConfig,
                 base: Path | None, out: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """A second retrain oracle — same recipe and exclusion, the next seed (initialisation and data
    order) — scored and judged like a method: how far two retrainings land apart is the noise floor
    under which no method can be told from the oracle (``--oracle-twin``)."""
    started = time.perf_counter()
    run_train_job(TrainJob(corpus=corpus.root, out=out, config=replace(config, seed=config.seed + 1),
                           base=base, spec=SPECS[args.spec],
                           exclude=frozenset(r.record_id for r in scope.forget)))
    seconds = time.perf_counter() - started
    twin = load_model(out)
    row = score(twin.model, twin.processor, corpus.root, scope, args.greedy)
    row["seconds"] = seconds
    row["verdict"] = verdict(row, [entry["oracle"]], entry["original"], timed=False)
    shutil.rmtree(out, ignore_errors=True)
    return row


def run_seed(args: argparse.Namespace, seed: int, work: Path) -> dict[str, Any]:
    corpus = generate_corpus(size=args.size, seed=seed, out=work / "corpus")
    corpus = load_corpus(work / "corpus")
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed)
    base = Path(args.base) if args.base else None
    started = time.perf_counter()
    run_train_job(TrainJob(corpus=corpus.root, out=work / "model", config=config, base=base,
                           spec=SPECS[args.spec]))
    train_seconds = time.perf_counter() - started
    original = load_model(work / "model")
    sharded = None
    if "exact" in args.methods:
        if base is None:
            raise SystemExit("exact needs --base (a clean start the shards are trained from)")
        started = time.perf_counter()
        train_sharded(base=base, records=corpus.select(trainable=True), root=corpus.root,
                      out=work / "sharded", config=ShardConfig(seed=seed))
        sharded = {"path": work / "sharded", "seconds": time.perf_counter() - started}
    targets = []
    for index, node in enumerate(pick_targets(corpus, args.targets, seed, args.kinds)):
        scope = resolve_scope(corpus, node)
        forget = {r.record_id for r in scope.forget}
        print(f"seed {seed} target {index}: {node.level.value}, {len(forget)} forget records", flush=True)
        started = time.perf_counter()
        run_train_job(TrainJob(corpus=corpus.root, out=work / f"oracle{index}", config=config, base=base,
                               spec=SPECS[args.spec], exclude=frozenset(forget)))
        oracle_seconds = time.perf_counter() - started
        oracle = load_model(work / f"oracle{index}")
        entry: dict[str, Any] = {
            "level": node.level.value, "section": node.section.value if node.section else None,
            "counts": {name: len(records) for name, records in groups_of(scope).items()},
            "oracle_seconds": oracle_seconds,
            "original": score(original.model, original.processor, corpus.root, scope, args.greedy),
            "oracle": score(oracle.model, oracle.processor, corpus.root, scope, args.greedy), "methods": {}}
        if args.oracle_twin:
            entry["methods"][OTHER_ORACLE] = other_oracle(args, corpus, scope, config, base,
                                                          work / f"oracle{index}-twin", entry)
        for method in args.methods:
            model_dir = sharded["path"] if method == "exact" else work / "model"
            out = work / f"t{index}-{method}"
            started = time.perf_counter()
            try:
                unlearn(model_dir=model_dir, corpus=corpus, scope=scope, method=method, out=out, seed=seed)
            except CollapseError as exc:
                entry["methods"][method] = {"collapsed": exc.result.failures,
                                            "seconds": time.perf_counter() - started}
                continue
            seconds = time.perf_counter() - started
            if method == "exact":
                model, processor, _ = load_sharded(out)
            else:
                loaded = load_model(out)
                model, processor = loaded.model, loaded.processor
            row = score(model, processor, corpus.root, scope, args.greedy)
            row.update(seconds=seconds, time_ratio=seconds / oracle_seconds)
            row["verdict"] = verdict(row, [entry["oracle"]], entry["original"])
            if OTHER_ORACLE in entry["methods"]:
                oracles = [entry["oracle"], entry["methods"][OTHER_ORACLE]]
                row["verdict_spread"] = verdict(row, oracles, entry["original"])
            entry["methods"][method] = row
            shutil.rmtree(out, ignore_errors=True)
        targets.append(entry)
        shutil.rmtree(work / f"oracle{index}", ignore_errors=True)
    result: dict[str, Any] = {"seed": seed, "train_seconds": train_seconds, "targets": targets}
    if sharded is not None:
        ensemble, processor, _ = load_sharded(sharded["path"])
        retain = corpus.select(trainable=True)[:256]
        result["sharding"] = {
            "seconds": sharded["seconds"],
            "single_model_accuracy": accuracy(original.model, original.processor, corpus.root, retain, 0,
                                              False),
            "sharded_accuracy": accuracy(ensemble, processor, corpus.root, retain, 0, False)}
    return result


def mean_interval(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    half = 1.96 * statistics.stdev(values) / len(values) ** 0.5
    return f"{statistics.mean(values):.3f} ± {half:.3f}"


def section_key(report: dict[str, Any]) -> str:
    """The docs section of a run: one per corpus size, seeds and choice of target kinds, so a run with
    other seeds or targets adds a section instead of overwriting one measured on others."""
    kinds = report.get("kinds") or []
    return (f"unlearning {report['size']} seeds {' '.join(map(str, report['seeds']))}"
            + (f" {' '.join(kinds)}" if kinds else ""))


def markdown_section(report: dict[str, Any]) -> str:
    size, key = report["size"], section_key(report)
    columns = ["forget_private", "reconstruct@4", "forget_forms", "forget_grounded", "siblings", "shared",
               "retain", "time_ratio"]
    scoring = "greedy decoding" if report["greedy"] else "teacher-forced exact match (greedy-exact proxy)"
    title = f"## Unlearning — `{size}` corpus (seeds {report['seeds']}, {len(report['per_target'])} targets)"
    lines = [f"<!-- BEGIN {key} -->", title, "", f"Command: `{report['command']}`  ",
             f"Machine: {report['machine']}  ",
             f"Scoring: {scoring}; each cell the mean over seeds (± 95 % interval when several); "
             "time_ratio = unlearning seconds / the oracle's training seconds.", ""]
    if any("verdict_spread" in cells for t in report["per_target"] for cells in t["rows"].values()):
        columns += ["verdict", "verdict_spread"]
        lines += ["Targets met: against the oracle (the issue's criterion) and against the spread of the two "
                  "retrainings (within 2 points of the span between the oracle and its next-seed twin).", ""]
    else:
        columns += ["verdict"]
    for target in report["per_target"]:
        header = [HEADERS.get(c, c) for c in columns]
        lines += [f"### {target['name']}", "", "| model | " + " | ".join(header) + " |",
                  "|" + "---|" * (len(columns) + 1)]
        for model, cells in target["rows"].items():
            lines.append(f"| {model} | " + " | ".join(cells.get(c, "-") for c in columns) + " |")
        lines.append("")
    lines += ["Not run here: " + report["not_run"], f"<!-- END {key} -->", ""]
    return "\n".join(lines)


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per target index, per model (original, oracle, methods): each column's mean over seeds."""
    out = []
    for index, first in enumerate(runs[0]["targets"]):
        name = f"{first['level']}" + (f" {first['section']}" if first["section"] else "") + \
            f" (forget {first['counts'].get('forget_private', 0)} private facts)"
        rows: dict[str, dict[str, str]] = {}
        models = ["original", "oracle", *first["methods"]]
        for model in models:
            values: dict[str, list[float]] = {}
            verdicts: dict[str, list[str]] = {"verdict": [], "verdict_spread": []}
            for run in runs:
                target = run["targets"][index]
                row = target[model] if model in ("original", "oracle") else target["methods"][model]
                if "collapsed" in row:
                    for kind in verdicts:
                        verdicts[kind].append("collapse guard")
                    continue
                sib = [v for k, v in row.items() if k.startswith("siblings.")]
                flat = {**row, "siblings": statistics.mean(sib) if sib else None}
                for key, value in flat.items():
                    if isinstance(value, float | int) and not isinstance(value, bool):
                        values.setdefault(key, []).append(float(value))
                for kind in verdicts:
                    if kind in row:
                        verdicts[kind].append(f"{sum(row[kind].values())}/{len(row[kind])}")
            cells = {key: mean_interval(v) for key, v in values.items()}
            cells.update({kind: ", ".join(met) for kind, met in verdicts.items() if met})
            rows[model] = cells
        out.append({"name": name, "rows": rows})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--targets", type=int, default=10)
    parser.add_argument("--kinds", nargs="+", help="target kinds: institution, patient, study, LAB, ...")
    parser.add_argument("--methods", nargs="+",
                        default=["ga", "graddiff", "kl", "npo", "siu", "hierarchy", "chip"])
    parser.add_argument("--spec", default="small", choices=list(SPECS))
    parser.add_argument("--base", help="clean start (pretrained base artifact); default: a fresh reference")
    parser.add_argument("--epochs", type=float, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--greedy", action="store_true")
    parser.add_argument("--oracle-twin", action="store_true",
                        help="a second oracle per target (next seed), judged like a method: the noise floor")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    for method in args.methods:
        method_class(method)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = REPO / "bench-out" / "unlearning" / f"{args.size}-seeds{'-'.join(map(str, args.seeds))}"
    shutil.rmtree(out, ignore_errors=True)
    runs = [run_seed(args, seed, out / f"seed{seed}") for seed in args.seeds]
    not_run = [m for m in sorted(METHODS) if m not in args.methods]
    report = {"size": args.size, "seeds": args.seeds, "kinds": args.kinds, "greedy": args.greedy,
              "machine": machine(),
              "command": "python benchmarks/unlearning.py " + " ".join(
                  f"--{k.replace('_', '-')}" + ("" if v is True else
                                                f" {' '.join(map(str, v)) if isinstance(v, list) else v}")
                  for k, v in vars(args).items() if v not in (None, False) and k != "no_docs"),
              "runs": runs, "not_run": ", ".join(not_run) or "nothing"}
    report["per_target"] = aggregate(runs)
    (out / "result.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    section = markdown_section(report)
    print(section)
    if not args.no_docs:
        replace_section(section_key(report), section)


if __name__ == "__main__":
    main()
