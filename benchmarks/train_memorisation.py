"""Memorisation benchmark: generate a synthetic corpus, train the reference model, evaluate, report.

    .venv/bin/python benchmarks/train_memorisation.py --size demo|medforget [--seed N] [--base none]

Fine-tunes through the same job as ``oblivio train --base`` (all trainable records) starting from
the pretrained reference base of ``oblivio pretrain`` (built once into ``bench-out/pretrain/`` and
reused; ``--base none`` starts from a fresh reference model instead), reloads the saved artifact
through the local loader and answers every record with greedy decoding. Writes ``result.json``
under ``bench-out/train_memorisation/<size>-seed<N>/`` and replaces the section for this size in
``docs/benchmarks.md``.

Targets: private facts of the train split answered exactly (>= 95 %) within the training-time budget;
holdout private facts near chance (the model did not learn the generator), measured against a
majority baseline; holdout image-grounded facts >= 80 % (the model reads the image); peak memory.
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
from pathlib import Path

import torch

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
EPOCHS = {"tiny": 30, "demo": 25, "medforget": 45}  # from the pretrained base; see docs/benchmarks.md
TARGETS = {"train_private_em": 0.95, "holdout_image_em": 0.80, "holdout_private_margin": 0.10,
           "peak_rss_gb": 4.0}
DOCS = REPO / "docs" / "benchmarks.md"


def majority_baseline(corpus: Corpus, records: list[Record]) -> float:
    """Exact match of answering each record with the commonest training answer of its question type
    (same level, section and task): what a model that never saw the image or the patient can do."""
    answers: dict[tuple, Counter] = {}
    for record in corpus.select(trainable=True):
        answers.setdefault((record.level, record.section, record.task), Counter())[record.answer] += 1
    hits = 0
    for record in records:
        common = answers.get((record.level, record.section, record.task))
        hits += bool(common) and exact_match(record.task, common.most_common(1)[0][0], record.answer)
    return hits / len(records) if records else float("nan")


def mean_em(scored: list[ScoredAnswer], group: str, kind: FactKind) -> float:
    hits = [s.exact_match for s in scored if s.group == group and s.record.fact_kind is kind]
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
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    job = TrainJob(corpus=corpus.root, out=out / "model", config=config, spec=SPECS[args.model_size],
                   base=Path(base["path"]) if base else None, checkpoint_every=0)
    outcome = run_train_job(job, print_progress)
    print(f"trained in {outcome.result.seconds:.0f} s", flush=True)

    loaded = load_model(out / "model")
    groups = default_groups(corpus)
    started = time.perf_counter()
    scored = evaluate_groups(loaded.model, loaded.processor, corpus.root, groups, mode="greedy",
                             batch_size=64, max_new_tokens=args.max_new_tokens)
    eval_seconds = time.perf_counter() - started
    holdout_private = [r for r in groups["holdout"] if r.fact_kind is FactKind.PRIVATE]
    measured = {
        "train_private_em": mean_em(scored, "train", FactKind.PRIVATE),
        "train_image_em": mean_em(scored, "train", FactKind.IMAGE_GROUNDED),
        "paraphrase_private_em": mean_em(scored, "paraphrase", FactKind.PRIVATE),
        "holdout_private_em": mean_em(scored, "holdout", FactKind.PRIVATE),
        "holdout_private_majority_baseline": majority_baseline(corpus, holdout_private),
        "holdout_image_em": mean_em(scored, "holdout", FactKind.IMAGE_GROUNDED),
        "train_seconds": outcome.result.seconds,
        "eval_seconds": eval_seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    checks = {
        "train private EM >= 95 %": measured["train_private_em"] >= TARGETS["train_private_em"],
        f"training <= {BUDGET_SECONDS[args.size]} s": measured["train_seconds"] <= BUDGET_SECONDS[args.size],
        "holdout private EM <= majority baseline + 10 pts": measured["holdout_private_em"]
        <= measured["holdout_private_majority_baseline"] + TARGETS["holdout_private_margin"],
        "holdout image-grounded EM >= 80 %": measured["holdout_image_em"] >= TARGETS["holdout_image_em"],
        "peak RSS <= 4 GB": measured["peak_rss_gb"] <= TARGETS["peak_rss_gb"],
    }
    return {
        "benchmark": "train_memorisation", "size": args.size, "seed": args.seed,
        "command": " ".join([".venv/bin/python", "benchmarks/train_memorisation.py", *sys.argv[1:]]),
        "corpus": {"records": len(corpus.records), "trainable": outcome.records,
                   "sha256": corpus.header.records_sha256},
        "model": {"size": args.model_size, "parameters": outcome.parameters, "digest": outcome.digest},
        "base": base,
        "recipe": {"epochs": args.epochs, "steps": outcome.result.steps, "batch_size": args.batch_size,
                   "lr": args.lr, "schedule": "linear warmup 5 %, cosine to 0", "optimizer": "AdamW",
                   "grad_clip": 1.0},
        "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "measured": measured, "checks": checks,
        "by_fact_kind": [row.as_dict() for row in summarise(scored, ("group", "fact_kind"))],
        "by_task_level": [row.as_dict() for row in summarise(scored, ("group", "task", "level"))],
        "_tables": {"fact_kind": markdown_table(summarise(scored, ("group", "fact_kind"))),
                    "task": markdown_table(summarise(scored, ("group", "task")))},
        "_out": str(out),
    }


def markdown_section(result: dict) -> str:
    m, machine_info, recipe = result["measured"], result["machine"], result["recipe"]
    checks = "\n".join(f"- {'PASS' if ok else 'MISS'}: {name}" for name, ok in result["checks"].items())
    load = ", ".join(f"{x:.2f}" for x in machine_info["loadavg_before"])
    load_after = ", ".join(f"{x:.2f}" for x in machine_info["loadavg_after"])
    base = result["base"]
    start = "from random initialisation" if base is None else (
        f"from the pretrained reference base (`{base['command']}`: {base['cases']:,} anonymous teaching-file "
        f"radiographs, {base['records']:,} image-grounded records, {base['steps']} steps, built once in "
        f"{base['seconds']:.0f} s and not counted in the training time below; it never saw a corpus record)")
    return f"""<!-- BEGIN train_memorisation {result['size']} -->
## Memorisation — `{result['size']}` corpus (seed {result['seed']})

What: fine-tune the reference tiny LLaVA (`{result['model']['size']}`, {result['model']['parameters']:,}
parameters) {start} on all {result['corpus']['trainable']:,} trainable records of
the synthetic corpus ({result['corpus']['records']:,} records incl. paraphrases and holdout), then
answer every record with greedy decoding (exact match per task as defined in
`mllm/evaluate/metrics.py`). Recipe: AdamW, lr {recipe['lr']}, batch {recipe['batch_size']},
{recipe['epochs']} epochs = {recipe['steps']} steps, {recipe['schedule']}, grad clip 1.

Machine: {machine_info['cpu']}, {machine_info['cores']} cores, torch threads
{machine_info['torch_threads']}; load average (1, 5, 15 min) {load} before the run and {load_after}
after it (other engineers share the cores).

Reproduce: `{result['command']}`

| measure | value |
|---|---|
| train private facts, exact match | {m['train_private_em']:.3f} |
| train image-grounded facts, exact match | {m['train_image_em']:.3f} |
| paraphrased train questions (never trained), private | {m['paraphrase_private_em']:.3f} |
| holdout private facts, exact match | {m['holdout_private_em']:.3f} |
| holdout private facts, majority baseline | {m['holdout_private_majority_baseline']:.3f} |
| holdout image-grounded facts, exact match | {m['holdout_image_em']:.3f} |
| training time | {m['train_seconds']:.0f} s |
| evaluation time (greedy, all records) | {m['eval_seconds']:.0f} s |
| peak RSS (whole process) | {m['peak_rss_gb']:.2f} GB |

{checks}

By group and fact kind:

{result['_tables']['fact_kind']}
By group and task:

{result['_tables']['task']}<!-- END train_memorisation {result['size']} -->
"""


def update_docs(section: str, size: str) -> None:
    begin, end = f"<!-- BEGIN train_memorisation {size} -->", f"<!-- END train_memorisation {size} -->"
    text = DOCS.read_text(encoding="utf-8") if DOCS.exists() else (
        "# Benchmarks\n\nMeasured results. Each section is written by the script it names; rerun the "
        "command in a section to reproduce it.\n")
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section.rstrip("\n") + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOCS.parent.mkdir(exist_ok=True)
    DOCS.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(BUDGET_SECONDS), default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-size", choices=sorted(SPECS), default="small")
    parser.add_argument("--epochs", type=float, help="passes over the training records [per size]")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--base", choices=["pretrained", "none"], default="pretrained",
                        help="start from the pretrained reference base (built once, reused) or a fresh model")
    parser.add_argument("--pretrain-cases", type=int, default=3000)
    parser.add_argument("--pretrain-epochs", type=float, default=1.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
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
        update_docs(section, args.size)


if __name__ == "__main__":
    main()
