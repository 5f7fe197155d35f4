"""Probe the pipeline's unlearning ladder on a served model: which rung passes verification, and why not.

    .venv/bin/python benchmarks/ladder_probe.py [--model DIR --corpus DIR] [--requests N] [--exact]
    .venv/bin/python benchmarks/ladder_probe.py --seeds 0 1 2 3 [--rung 0] [--logprobs]

Runs the engine the ``ml`` worker runs (:class:`compliance.pipeline.engine.MllmEngine`), without a
database or a broker, on patient-level requests for the first ``N`` patients of the queue
``pipeline_sequential.py`` files (institutions in turn). Default model and corpus: the ones ``make
demo`` trained in the data directory.

* Chain (default): each request climbs the deployment's ladder (``OBLIVIO_UNLEARN_LADDER``; rung *r*
  runs with seed *r*, as the pipeline does; ``exact`` rungs only with ``--exact``), and a passing
  candidate becomes the model the next request starts from (the earlier requests' records are
  ``already_forgotten``). One line per rung: verdict, seconds, membership AUC, failed checks.
* ``--seeds``: the first request's rung ``--rung`` once per seed, each from the given model — how
  stable a rung's verdict is.
* ``--logprobs``: for each candidate, the mean answer log-probability per token of the forget items
  against verification's never-trained twins at context depth 4 (the membership attack's items and
  scoring), per fact kind x task, with the loss score's AUC: where a membership gap comes from.

Writes ``bench-out/ladder_probe/result.json``; no docs section (the numbers it gave are quoted where
they are used, with this command).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline_sequential import REPO, request_queue

OUT = REPO / "bench-out" / "ladder_probe"


def setup() -> None:
    sys.path.insert(0, str(REPO / "platform"))
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "OBLIVIO_CACHE_URL"):
        os.environ.pop(name, None)
    from core.bootstrap import setup_django

    setup_django(check_keys=False)


def logprob_table(candidate: Path, corpus: Any, scope: Any) -> list[dict[str, Any]]:
    """Mean per-token answer log-prob of forget items vs twins per fact kind x task, and the AUC."""
    from mllm.data.prompts import with_context_of
    from mllm.data.schema import Level
    from mllm.verify import VerdictPolicy, subject
    from mllm.verify.attacks.membership import DEPTH, scoring_items
    from mllm.verify.stats import auc

    forget = [*scope.forget, *scope.children]
    kept = list(Level).index(scope.node.level)
    twins = [with_context_of(r, forget[i % len(forget)], min(kept, DEPTH))
             for i, r in enumerate(scope.holdout)]
    model, policy = subject("candidate", candidate), VerdictPolicy()
    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    for side, records in (("member", scoring_items(forget)), ("twin", scoring_items(twins))):
        for record, stats in zip(records, model.stats(records, corpus.root, policy), strict=True):
            cell = rows.setdefault((record.fact_kind.value, record.task.value), {"member": [], "twin": []})
            cell[side].append(float(stats.logps.mean()))
    table = []
    for (kind, task), cell in sorted(rows.items()):
        members, twin = cell["member"], cell["twin"]
        table.append({"kind": kind, "task": task, "members": len(members), "twins": len(twin),
                      "member_logprob": round(sum(members) / len(members), 2) if members else None,
                      "twin_logprob": round(sum(twin) / len(twin), 2) if twin else None,
                      "auc_loss": round(auc(members, twin, seed=0).value, 3) if members and twin else None})
    return table


def run_rung(model: Path, corpus: Any, target: Any, gone: frozenset[str], rung: dict[str, Any], seed: int,
             work: Path, logprobs: bool, baseline: dict[str, bool]) -> tuple[dict[str, Any], dict[str, bool]]:
    """One rung: unlearn, verify against the lineage's utility ``baseline`` (empty: measured on
    ``model``, as for a first served version); the verdict, its failed checks, (``logprobs``) the
    table, and the baseline to carry along the chain."""
    from compliance.pipeline.engine import EngineError, MllmEngine, merged_scope

    engine, out = MllmEngine(), work / f"{target.request_id}-{rung['method']}-seed{seed}"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    try:
        result = engine.unlearn(model_dir=model, corpus_root=corpus.root, targets=[target],
                                already_forgotten=gone, method=rung["method"],
                                config=rung.get("config", {}), out=out, seed=seed,
                                progress=lambda _: None, should_cancel=lambda: False,
                                checkpoint_dir=out.with_suffix(".checkpoints"))
    except EngineError as exc:
        return {"verdict": "refused", "reason": str(exc),
                "seconds": round(time.perf_counter() - started, 1)}, baseline
    verified = engine.verify(original=model, candidate=result.artifact_dir, corpus_root=corpus.root,
                             targets=[target], already_forgotten=gone, thresholds={}, baseline=baseline,
                             progress=lambda _: None)
    checks = {c["name"]: c for c in verified.checks}
    outcome = {"verdict": verified.verdict, "seconds": round(time.perf_counter() - started, 1),
               "artifact": str(result.artifact_dir),
               "membership_auc": checks.get("membership_inference", {}).get("value"),
               "failed": {c["name"]: c["value"] for c in verified.failed_checks}}
    if logprobs:
        outcome["logprobs"] = logprob_table(result.artifact_dir, corpus,
                                            merged_scope(corpus, [target], gone))
    return outcome, verified.baseline


def targets_for(corpus: Any, count: int) -> list[Any]:
    from compliance.pipeline.engine import ScopeTarget
    from mllm.data.schema import Level
    from mllm.data.scope import NodeRef, resolve_scope

    queue, _ = request_queue(corpus, count)
    trained = corpus.select(trainable=True)
    targets = []
    for index, (_, patient) in enumerate(queue, start=1):
        scope = resolve_scope(corpus, NodeRef.of(next(r for r in trained if r.patient_id == patient),
                                                 Level.PATIENT))
        targets.append(ScopeTarget(f"request{index}", "patient",
                                   frozenset(r.record_id for r in (*scope.forget, *scope.children))))
    return targets


def describe(label: str, outcome: dict[str, Any]) -> str:
    auc = outcome.get("membership_auc")
    failed = outcome.get("failed") or outcome.get("reason")
    text = (f"{label}: {outcome['verdict']} in {outcome['seconds']:.0f} s, membership AUC "
            f"{'-' if auc is None else f'{auc:.3f}'}, failed {failed}")
    for row in outcome.get("logprobs", []):
        text += (f"\n    {row['kind']:>14} {row['task']:<14} member {row['member_logprob']} "
                 f"(n={row['members']})  twin {row['twin_logprob']} (n={row['twins']})  "
                 f"AUC {row['auc_loss']}")
    return text


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="served model directory [default: the demo's]")
    parser.add_argument("--corpus", type=Path, help="its corpus directory [default: the demo's]")
    parser.add_argument("--requests", type=int, default=1, help="patients from the queue (chain mode)")
    parser.add_argument("--exact", action="store_true", help="climb to the ladder's exact rungs too")
    parser.add_argument("--seeds", type=int, nargs="+", help="repeat one rung of the first request per seed")
    parser.add_argument("--rung", type=int, default=0, help="the rung --seeds repeats")
    parser.add_argument("--logprobs", action="store_true", help="member vs twin log-probs per kind x task")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    setup()
    import torch
    from django.conf import settings

    from core.home import oblivio_home
    from mllm.data.schema import load_corpus

    torch.set_num_threads(args.threads)
    demo = oblivio_home() / "demo"
    model, corpus = args.model or demo / "model", load_corpus(args.corpus or demo / "corpus")
    ladder = settings.OBLIVIO_UNLEARN_LADDER
    work = OUT / "work"
    runs = []
    if args.seeds:
        target = targets_for(corpus, 1)[0]
        for seed in args.seeds:
            outcome, _ = run_rung(model, corpus, target, frozenset(), ladder[args.rung], seed, work,
                                  args.logprobs, {})
            runs.append({"request": 1, "rung": args.rung, "seed": seed, **outcome})
            print(describe(f"request 1 rung {args.rung} seed {seed}", outcome), flush=True)
    else:
        gone: frozenset[str] = frozenset()
        baseline: dict[str, bool] = {}
        for index, target in enumerate(targets_for(corpus, args.requests), start=1):
            for rung_index, rung in enumerate(ladder):
                if rung["method"] == "exact" and not args.exact:
                    continue
                outcome, baseline = run_rung(model, corpus, target, gone, rung, rung_index, work,
                                             args.logprobs, baseline)
                runs.append({"request": index, "rung": rung_index, "seed": rung_index, **outcome})
                print(describe(f"request {index} rung {rung_index} ({rung['method']})", outcome), flush=True)
                if outcome["verdict"] == "pass":
                    model = Path(outcome["artifact"])
                    break
            gone |= target.forget
    result = {"command": " ".join(["python", *sys.argv]), "ladder": ladder,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"{args.threads} torch threads", "runs": runs}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
