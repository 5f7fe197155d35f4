"""Memorisation benchmark: generate a synthetic corpus, train the reference model, evaluate, report.

    .venv/bin/python benchmarks/train_memorisation.py --size demo|medforget [--seed N] [--base none]
        [--depth-draw per-epoch|per-record] [--autocast bfloat16] [--epochs E] [--weight-decay W]

The recipe draws every record's context depth anew each epoch (``--depth-draw per-epoch``, 28 epochs);
``--autocast bfloat16`` is how the demo run fits the 300 s budget on the AMD EPYC it was measured on
(no gain on an Intel Xeon with AMX: docs/benchmarks.md).

Fine-tunes through the same job as ``oblivio train --base`` (all trainable records) starting from
the pretrained reference base of ``oblivio pretrain`` (built once into ``bench-out/pretrain/`` and
reused; ``--base none`` starts from a fresh reference model instead), reloads the saved artifact
through the local loader and answers with greedy decoding: the trained forms at every context depth
0-4, the held-out forms and the holdout patients at depths 0 and 4 (prompts from the one renderer,
``mllm.data.prompts.render_prompt``). Writes ``result.json`` under
``bench-out/train_memorisation/<size>-seed<N>/`` and replaces the section for this size in
``docs/benchmarks.md``.

Targets (issue "Testbed v2"): trained private facts >= 95 % exact match; held-out phrasings and
cross-task forms of trained private facts >= 80 % of the trained-form score; depth 4 >= depth 0 on
trained facts; holdout-patient private facts within 10 points of a majority baseline (the model did
not learn the generator); holdout image-grounded >= 80 % (the model reads the image); fine-tuning
within the time budget; peak memory. Reported per depth, form, level and fact kind, with the strict
and the MedForget-comparable scores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch
from docs_section import replace_section

from mllm.data.prompts import DEPTHS, MAX_DEPTH, training_depth
from mllm.data.schema import Corpus, FactKind, Record
from mllm.data.synth import generate_corpus
from mllm.data.teaching import VERSION as TEACHING_VERSION
from mllm.evaluate.groups import default_groups
from mllm.evaluate.metrics import exact_match
from mllm.evaluate.report import ScoredAnswer, evaluate_groups, markdown_table, summarise
from mllm.models.loader import load_model
from mllm.models.specs import SPECS
from mllm.train.loop import Progress, TrainConfig
from mllm.train.pretrain import PretrainJob, run_pretrain_job
from mllm.train.recipe import TrainJob, run_train_job

REPO = Path(__file__).resolve().parent.parent
BUDGET_SECONDS = {"tiny": 60, "demo": 300, "medforget": 2700}
EPOCHS = {"tiny": 30, "demo": 28, "medforget": 28}  # per-epoch depth draws; see docs/benchmarks.md
TARGETS = {"train_private_em": 0.95, "held_out_ratio": 0.80, "holdout_image_em": 0.80,
           "holdout_private_margin": 0.10, "peak_rss_gb": 4.0}
SHORT_DEPTHS = (0, MAX_DEPTH)  # held-out forms and holdout patients are asked at these depths


def majority_baseline(corpus: Corpus, records: list[Record]) -> float:
    """Exact match of answering each record with the commonest training answer of its question
    (same fact key and form): what a model that never saw the image or the patient can do."""
    answers: dict[tuple, Counter] = {}
    for record in corpus.select(trainable=True):
        answers.setdefault((record.fact_key, record.form), Counter())[record.answer] += 1
    hits = 0
    for record in records:
        common = answers.get((record.fact_key, record.form))
        hits += bool(common) and exact_match(record.task, common.most_common(1)[0][0], record.answer)
    return hits / len(records) if records else float("nan")


def held_out_kind(corpus: Corpus) -> dict[str, str]:
    """For every eval-only record: ``phrasing`` (its task is trained for that fact) or ``cross-task``."""
    trained: dict[tuple, set] = {}
    for record in corpus.select(trainable=True):
        trained.setdefault((record.owner_id, record.fact_key), set()).add(record.task)
    return {r.record_id: "phrasing" if r.task in trained.get((r.owner_id, r.fact_key), ()) else "cross-task"
            for r in corpus.records if r.eval_only}


def mean_em(scored: list[ScoredAnswer], group: str, kind: FactKind, *, depths: tuple[int, ...] = DEPTHS,
            where: set[str] | None = None, seed: int | None = None) -> float:
    """Mean exact match of ``group``'s ``kind`` facts at ``depths``; with ``seed``, each record only at
    the depth it was trained at (the training prompt itself)."""
    hits = [s.exact_match for s in scored if s.group == group and s.record.fact_kind is kind
            and s.depth in depths and (where is None or s.record.record_id in where)
            and (seed is None or s.depth == training_depth(s.record, seed))]
    return sum(hits) / len(hits) if hits else float("nan")


def machine() -> dict[str, object]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__}


def print_progress(progress: Progress) -> None:
    if progress.step % max(1, progress.total_steps // 20) == 0 or progress.step == progress.total_steps:
        print(f"step {progress.step}/{progress.total_steps} epoch {progress.epoch} "
              f"loss {progress.loss:.4f} lr {progress.lr:.2e}", flush=True)


def pretrained_base(args: argparse.Namespace) -> dict[str, object]:
    """The pretrained base for ``args`` (built on first use, then reused) and how it was built."""
    out = REPO / "bench-out" / "pretrain" / (f"{args.model_size}-teaching-v{TEACHING_VERSION}-"
                                             f"cases{args.pretrain_cases}-epochs{args.pretrain_epochs:g}-seed{args.seed}")
    info_path = out / "result.json"
    if not info_path.is_file():
        shutil.rmtree(out, ignore_errors=True)
        config = TrainConfig(epochs=args.pretrain_epochs, batch_size=args.batch_size, lr=args.lr,
                             seed=args.seed)
        job = PretrainJob(out=out / "model", spec=SPECS[args.model_size], cases=args.pretrain_cases,
                          config=config)
        print(f"building the pretrained base in {out}", flush=True)
        outcome = run_pretrain_job(job, print_progress)
        info = {"path": str(out / "model"), "digest": outcome.digest, "cases": args.pretrain_cases,
                "records": outcome.records, "epochs": args.pretrain_epochs, "steps": outcome.result.steps,
                "seconds": outcome.result.seconds,
                "command": f"oblivio pretrain --out {(out / 'model').relative_to(REPO)} "
                           f"--cases {args.pretrain_cases} --epochs {args.pretrain_epochs:g} "
                           f"--seed {args.seed}"}
        info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return json.loads(info_path.read_text(encoding="utf-8"))


def run(args: argparse.Namespace) -> dict[str, object]:
    out = Path(args.out or REPO / "bench-out" / "train_memorisation" / f"{args.size}-seed{args.seed}")
    if out.exists() and not args.out:
        shutil.rmtree(out)  # the default working directory holds only an earlier run's output
    elif out.exists():
        raise SystemExit(f"{out} exists; remove it or choose another --out")
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    corpus = generate_corpus(size=args.size, seed=args.seed, out=out / "corpus")
    base = pretrained_base(args) if args.base == "pretrained" else None
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         weight_decay=args.weight_decay,
                         autocast=args.autocast, depth_draw=args.depth_draw)
    job = TrainJob(corpus=corpus.root, out=out / "model", config=config, spec=SPECS[args.model_size],
                   base=Path(base["path"]) if base else None, checkpoint_every=0)
    outcome = run_train_job(job, print_progress)
    print(f"trained in {outcome.result.seconds:.0f} s", flush=True)

    loaded = load_model(out / "model")
    groups = default_groups(corpus)
    started = time.perf_counter()
    options = {"mode": "greedy", "batch_size": 64, "max_new_tokens": args.max_new_tokens}
    scored = evaluate_groups(loaded.model, loaded.processor, corpus.root, {"train": groups["train"]},
                             depths=DEPTHS, **options)
    scored += evaluate_groups(loaded.model, loaded.processor, corpus.root,
                              {name: groups[name] for name in ("held_out_forms", "holdout")},
                              depths=SHORT_DEPTHS, **options)
    eval_seconds = time.perf_counter() - started
    kinds = held_out_kind(corpus)
    phrasing = {rid for rid, kind in kinds.items() if kind == "phrasing"}
    cross_task = set(kinds) - phrasing
    private, image = FactKind.PRIVATE, FactKind.IMAGE_GROUNDED
    holdout_private = [r for r in groups["holdout"] if r.fact_kind is private]
    trained_short = mean_em(scored, "train", private, depths=SHORT_DEPTHS)
    measured = {
        "train_private_em": mean_em(scored, "train", private),
        "train_private_em_training_depth": mean_em(scored, "train", private, seed=args.seed)
        if args.depth_draw == "per-record" else None,  # per-epoch: every depth is a training prompt
        "train_private_em_depth0": mean_em(scored, "train", private, depths=(0,)),
        "train_private_em_depth4": mean_em(scored, "train", private, depths=(MAX_DEPTH,)),
        "train_image_em": mean_em(scored, "train", image),
        "held_out_phrasing_private_em": mean_em(scored, "held_out_forms", private, depths=SHORT_DEPTHS,
                                                where=phrasing),
        "cross_task_private_em": mean_em(scored, "held_out_forms", private, depths=SHORT_DEPTHS,
                                         where=cross_task),
        "train_private_em_depths_0_4": trained_short,
        "holdout_private_em": mean_em(scored, "holdout", private, depths=SHORT_DEPTHS),
        "holdout_private_majority_baseline": majority_baseline(corpus, holdout_private),
        "holdout_image_em": mean_em(scored, "holdout", image, depths=SHORT_DEPTHS),
        "train_seconds": outcome.result.seconds,
        "eval_seconds": eval_seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    ratio = TARGETS["held_out_ratio"] * trained_short
    checks = {
        "trained private EM >= 95 %": measured["train_private_em"] >= TARGETS["train_private_em"],
        "held-out phrasings >= 80 % of trained": measured["held_out_phrasing_private_em"] >= ratio,
        "cross-task forms >= 80 % of trained": measured["cross_task_private_em"] >= ratio,
        "depth 4 >= depth 0 on trained private facts": measured["train_private_em_depth4"]
        >= measured["train_private_em_depth0"],
        f"training <= {BUDGET_SECONDS[args.size]} s": measured["train_seconds"] <= BUDGET_SECONDS[args.size],
        "holdout private EM <= majority baseline + 10 pts": measured["holdout_private_em"]
        <= measured["holdout_private_majority_baseline"] + TARGETS["holdout_private_margin"],
        "holdout image-grounded EM >= 80 %": measured["holdout_image_em"] >= TARGETS["holdout_image_em"],
        "peak RSS <= 4 GB": measured["peak_rss_gb"] <= TARGETS["peak_rss_gb"],
    }
    tagged = [replace(s, group=f"{s.group} ({kinds[s.record.record_id]})") if s.group == "held_out_forms"
              else s for s in scored]
    return {
        "benchmark": "train_memorisation", "size": args.size, "seed": args.seed,
        "command": " ".join([".venv/bin/python", "benchmarks/train_memorisation.py", *sys.argv[1:]]),
        "corpus": {"records": len(corpus.records), "trainable": outcome.records,
                   "sha256": corpus.header.records_sha256},
        "model": {"size": args.model_size, "parameters": outcome.parameters, "digest": outcome.digest},
        "base": base,
        "recipe": {"epochs": args.epochs, "steps": outcome.result.steps, "batch_size": args.batch_size,
                   "lr": args.lr, "weight_decay": args.weight_decay,
                   "schedule": "linear warmup 5 %, cosine to 0", "optimizer": "AdamW", "grad_clip": 1.0,
                   "autocast": args.autocast, "depth_draw": args.depth_draw},
        "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "measured": measured, "checks": checks,
        "tables": {name: [row.as_dict() for row in summarise(tagged, keys)] for name, keys in TABLES.items()},
        "_tables": {name: markdown_table(summarise(tagged, keys)) for name, keys in TABLES.items()},
        "_out": str(out),
    }


TABLES = {"fact kind": ("group", "fact_kind"), "depth (private facts)": ("group", "fact_kind", "depth"),
          "task form": ("group", "fact_kind", "form"), "level": ("group", "level")}


def markdown_section(result: dict) -> str:
    m, machine_info, recipe = result["measured"], result["machine"], result["recipe"]
    checks = "\n".join(f"- {'PASS' if ok else 'MISS'}: {name}" for name, ok in result["checks"].items())
    load = ", ".join(f"{x:.2f}" for x in machine_info["loadavg_before"])
    load_after = ", ".join(f"{x:.2f}" for x in machine_info["loadavg_after"])
    tables = "".join(f"By {name}:\n\n{table}\n" for name, table in result["_tables"].items())
    base = result["base"]
    precision = f", {recipe['autocast']} autocast (fp32 weights)" if recipe.get("autocast") else ", fp32"
    own = m.get("train_private_em_training_depth")
    own_prompt = "– (every depth is trained)" if own is None else f"{own:.3f}"
    draw = {"per-epoch": "drawn anew every epoch", "per-record": "drawn once per record"}[
        recipe.get("depth_draw", "per-record")]
    start = "from random initialisation" if base is None else (
        f"from the pretrained reference base (`{base['command']}`: {base['cases']:,} anonymous teaching-file "
        f"radiographs, {base['records']:,} image-grounded records, {base['steps']} steps, built once in "
        f"{base['seconds']:.0f} s and not counted in the training time below; it never saw a corpus record)")
    return f"""<!-- BEGIN train_memorisation {result['size']} -->
## Memorisation — `{result['size']}` corpus (seed {result['seed']})

What: fine-tune the reference tiny LLaVA (`{result['model']['size']}`, {result['model']['parameters']:,}
parameters) {start} on all {result['corpus']['trainable']:,} trained forms of the synthetic corpus
({result['corpus']['records']:,} records incl. held-out forms and holdout patients), each rendered at
a context depth drawn from the training mix (uniform 0-4, `mllm/data/prompts.py`; {draw}), then answer
with greedy decoding: trained forms at every depth 0-4, held-out forms and holdout patients at
depths 0 and 4. Exact match per task as defined in `mllm/evaluate/metrics.py`; "MedForget" is the
MedForget-comparable score (classification / cloze correct when stemmed ROUGE-L F1 = 1, generation
= ROUGE-L F1). Recipe: AdamW, lr {recipe['lr']}, weight decay {recipe.get('weight_decay', 0.0)},
batch {recipe['batch_size']},
{recipe['epochs']} epochs = {recipe['steps']} steps, {recipe['schedule']}, grad clip 1{precision}.

Machine: {machine_info['cpu']}, {machine_info['cores']} cores, torch threads
{machine_info['torch_threads']}; load average (1, 5, 15 min) {load} before the run and {load_after}
after it (the run itself keeps it near its thread count; more means other work shared the cores).

Reproduce: `{result['command']}`

| measure (private facts unless said) | value |
|---|---|
| trained forms, exact match (depths 0-4) | {m['train_private_em']:.3f} |
| trained forms at depth 0 / 4 | {m['train_private_em_depth0']:.3f} / {m['train_private_em_depth4']:.3f} |
| trained forms at their training depth (the training prompt) | {own_prompt} |
| trained forms, depths 0 and 4 (reference for held-out forms) | {m['train_private_em_depths_0_4']:.3f} |
| held-out phrasings of trained facts, depths 0 and 4 | {m['held_out_phrasing_private_em']:.3f} |
| cross-task forms of trained facts, depths 0 and 4 | {m['cross_task_private_em']:.3f} |
| trained forms, image-grounded (depths 0-4) | {m['train_image_em']:.3f} |
| holdout patients, exact match (depths 0 and 4) | {m['holdout_private_em']:.3f} |
| holdout patients, majority baseline | {m['holdout_private_majority_baseline']:.3f} |
| holdout patients, image-grounded | {m['holdout_image_em']:.3f} |
| training time | {m['train_seconds']:.0f} s |
| evaluation time (greedy) | {m['eval_seconds']:.0f} s |
| peak RSS (whole process) | {m['peak_rss_gb']:.2f} GB |

{checks}

{tables}<!-- END train_memorisation {result['size']} -->
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(BUDGET_SECONDS), default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-size", choices=sorted(SPECS), default="small")
    parser.add_argument("--epochs", type=float, help="passes over the training records [per size]")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay [0]")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--base", choices=["pretrained", "none"], default="pretrained",
                        help="start from the pretrained reference base (built once, reused) or a fresh model")
    parser.add_argument("--pretrain-cases", type=int, default=3000)
    parser.add_argument("--pretrain-epochs", type=float, default=1.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--depth-draw", choices=["per-record", "per-epoch"], default="per-epoch",
                        help="a record's context depth drawn once, or anew every epoch [per-epoch]")
    parser.add_argument("--autocast", choices=["bfloat16"],
                        help="mixed-precision forward in this dtype (default: fp32)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--out", help="working directory [bench-out/train_memorisation/SIZE-seedN]")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    args.epochs = args.epochs or EPOCHS[args.size]
    result = run(args)
    out = Path(result.pop("_out"))
    section = markdown_section(result)
    result.pop("_tables")
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(section)
    if not args.no_docs:
        replace_section(f"train_memorisation {args.size}", section)


if __name__ == "__main__":
    main()
