"""``oblivio`` subcommands of the ML library (no Django): corpus generation, training, evaluation.

Heavy imports (torch, transformers) stay inside each command so ``oblivio --help`` stays fast.
``COMMANDS`` is what the ``oblivio`` entry point registers.
"""

from __future__ import annotations

from pathlib import Path

import click

from mllm.models.specs import SPECS

COMMANDS: list[click.Command] = []


# ---- training and evaluation (mllm.train, mllm.evaluate) ----

def _read_ids(paths: tuple[Path, ...]) -> frozenset[str]:
    """Record ids from text files, one per line; blank lines and ``#`` comments are ignored."""
    ids: set[str] = set()
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                ids.add(line)
    return frozenset(ids)


def _quiet_transformers(threads: int | None) -> None:
    """Set torch's CPU threads and silence transformers' own load/save progress bars."""
    import torch
    from transformers.utils import logging

    if threads:
        torch.set_num_threads(threads)
    logging.disable_progress_bar()


@click.command("train")
@click.option("--corpus", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Corpus directory (corpus.json, records.jsonl, images/).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="New artifact directory.")
@click.option("--base", type=click.Path(path_type=Path),
              help="Start from this local model directory instead of a fresh reference model.")
@click.option("--size", default="small", show_default=True, type=click.Choice(list(SPECS)),
              help="Reference model size (ignored with --base).")
@click.option("--lora", is_flag=True,
              help="Train LoRA adapters on the language model instead of all weights.")
@click.option("--lora-rank", default=16, show_default=True, type=click.IntRange(1, 1024))
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True),
              help="Passes over the training records [default: 40].")
@click.option("--steps", type=click.IntRange(1), help="Optimizer steps (instead of --epochs).")
@click.option("--lr", default=1e-3, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Peak learning rate (linear warmup, then cosine decay to 0).")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seeds weights, adapters and data order.")
@click.option("--retain-only-exclude", "exclude_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File of record ids (one per line) left out of training: trains the retrain oracle.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in OUT.ckpt/.")
@click.option("--checkpoint-every", default=200, show_default=True, type=click.IntRange(0),
              help="Steps between resumable checkpoints (0: none).")
@click.option("--threads", type=click.IntRange(1), help="torch CPU threads [default: all cores].")
def train(corpus: Path, out: Path, base: Path | None, size: str, lora: bool, lora_rank: int,
          epochs: float | None, steps: int | None, lr: float, batch_size: int, seed: int,
          exclude_files: tuple[Path, ...], resume: bool, checkpoint_every: int, threads: int | None) -> None:
    """Fine-tune a model on a corpus's training records and save it as an artifact."""
    from tqdm import tqdm

    from mllm.data.schema import CorpusError
    from mllm.models.loader import ModelLoadError
    from mllm.models.lora import LoraSettings
    from mllm.train.checkpoint import CheckpointMismatchError
    from mllm.train.loop import Progress, TrainConfig
    from mllm.train.recipe import TrainJob, TrainJobError, run_train_job

    if epochs is not None and steps is not None:
        raise click.UsageError("give --epochs or --steps, not both")
    _quiet_transformers(threads)
    config = TrainConfig(epochs=40.0 if epochs is None else epochs, steps=steps, batch_size=batch_size,
                         lr=lr, seed=seed)
    job = TrainJob(corpus=corpus, out=out, config=config, base=base, spec=SPECS[size],
                   lora=LoraSettings(rank=lora_rank, alpha=lora_rank) if lora else None,
                   exclude=_read_ids(exclude_files), checkpoint_every=checkpoint_every, resume=resume)
    bar: tqdm | None = None

    def on_progress(progress: Progress) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=progress.total_steps, initial=progress.step - 1, unit="step", desc="train")
        bar.set_postfix(loss=f"{progress.loss:.4f}", lr=f"{progress.lr:.1e}", epoch=progress.epoch,
                        refresh=False)
        bar.update(progress.step - bar.n)

    try:
        outcome = run_train_job(job, on_progress)
    except (CorpusError, ModelLoadError, TrainJobError, CheckpointMismatchError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
    result = outcome.result
    click.echo(f"saved {out}: {outcome.parameters:,} parameters, {outcome.records} records, "
               f"{result.steps} steps in {result.seconds:.0f} s, probe loss "
               f"{result.probe_loss_before:.3f} -> {result.probe_loss_after:.4f}")
    click.echo(f"digest sha256:{outcome.digest}")


@click.command("eval")
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
              help="Local model directory (an Oblivio artifact or a LLaVA / Qwen2-VL checkpoint).")
@click.option("--corpus", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--groups", "groups_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSON {"group": [record ids]}; default: train, paraphrase and holdout records.')
@click.option("--mode", default="greedy", show_default=True, type=click.Choice(["greedy", "teacher-forced"]),
              help="Greedy decoding, or the fast teacher-forced argmax proxy.")
@click.option("--by", default="group,task,level", show_default=True,
              help="Comma-separated table keys: group and/or record fields (fact_kind, section, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print metrics, table and answers as JSON.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1))
@click.option("--max-new-tokens", default=128, show_default=True, type=click.IntRange(1))
@click.option("--threads", type=click.IntRange(1), help="torch CPU threads [default: all cores].")
def evaluate(model_dir: Path, corpus: Path, groups_file: Path | None, mode: str, by: str, as_json: bool,
             batch_size: int, max_new_tokens: int, threads: int | None) -> None:
    """Answer a corpus's records with a model and print exact match / ROUGE-L per group, task and level."""
    import json

    from mllm.data.schema import CorpusError, Record, load_corpus
    from mllm.evaluate.groups import GroupsError, default_groups, groups_from_file
    from mllm.evaluate.report import evaluate_groups, evaluation_json, markdown_table, summarise
    from mllm.models.loader import ModelLoadError, load_model

    keys = [key.strip() for key in by.split(",") if key.strip()]
    unknown = [key for key in keys if key != "group" and key not in Record.__dataclass_fields__]
    if not keys or unknown:
        raise click.BadParameter(f"unknown key {unknown[0] if unknown else by!r}", param_hint="--by")
    _quiet_transformers(threads)
    try:
        loaded_corpus = load_corpus(corpus)
        groups = (groups_from_file(loaded_corpus, groups_file) if groups_file
                  else default_groups(loaded_corpus))
        loaded = load_model(model_dir)
    except (CorpusError, GroupsError, ModelLoadError) as exc:
        raise click.ClickException(str(exc)) from None
    eval_mode = "greedy" if mode == "greedy" else "teacher_forced"
    scored = evaluate_groups(loaded.model, loaded.processor, loaded_corpus.root, groups, mode=eval_mode,
                             batch_size=batch_size, max_new_tokens=max_new_tokens)
    if as_json:
        document = {"model": str(model_dir), "corpus_sha256": loaded_corpus.header.records_sha256,
                    **evaluation_json(scored, mode=eval_mode, keys=keys)}
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(markdown_table(summarise(scored, keys)), nl=False)


COMMANDS += [train, evaluate]
