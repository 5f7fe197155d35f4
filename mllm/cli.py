"""``oblivio`` subcommands of the ML library (no Django): corpus generation, training, evaluation.

Heavy imports (torch, transformers) stay inside each command so ``oblivio --help`` stays fast.
``COMMANDS`` is what the ``oblivio`` entry point registers.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from mllm.data.entities import HIERARCHY_FILE
from mllm.data.schema import (
    HEADER_FILE,
    IMAGES_DIR,
    RECORDS_FILE,
    Corpus,
    CorpusError,
    FactKind,
    Level,
    Split,
    Task,
    load_corpus,
)
from mllm.data.synth import SIZES
from mllm.models.specs import SPECS

if TYPE_CHECKING:
    from mllm.train.loop import TrainConfig

COMMANDS: list[click.Command] = []


# ---- corpus generation and MedForget interchange (mllm.data) ----

_CORPUS_ENTRIES = frozenset({HEADER_FILE, RECORDS_FILE, HIERARCHY_FILE, IMAGES_DIR})


def _is_corpus_entry(path: Path) -> bool:
    return path.name in _CORPUS_ENTRIES


def _written_corpus(out: Path) -> Callable[[Path], bool]:
    """Which entries of ``out`` an earlier run wrote: none unless ``out`` loads as a corpus, and
    ``images/`` only when every file in it is an image the corpus's records use."""
    try:
        corpus = load_corpus(out)
    except (CorpusError, OSError, ValueError):
        return lambda entry: False
    used = {corpus.image_path(record).resolve() for record in corpus.records}
    images = out / IMAGES_DIR
    images_ours = all(file.resolve() in used for file in images.rglob("*") if not file.is_dir())
    return lambda entry: _is_corpus_entry(entry) and (entry.name != IMAGES_DIR or images_ours)


def _is_medforget_entry(path: Path) -> bool:
    """A ``<level>_level`` folder holding nothing but the two sets an export writes."""
    from mllm.data.medforget import FORGET_FILE, LEVEL_SUFFIX, RETAIN_FILE

    return (path.is_dir() and not path.is_symlink() and path.name.endswith(LEVEL_SUFFIX)
            and all(child.name in {FORGET_FILE, RETAIN_FILE} and child.is_file() for child in path.iterdir()))


def _remove(out: Path, ours: Callable[[Path], bool]) -> None:
    for entry in out.iterdir() if out.is_dir() else ():
        if ours(entry):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def _prepare_out(out: Path, *, force: bool, ours: Callable[[Path], bool]) -> None:
    """Refuse a non-empty ``out``; with ``force``, delete what an earlier run wrote there — only after
    checking that everything in it is Oblivio's (one foreign file and nothing is deleted)."""
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise click.ClickException(f"{out} is not empty; use --force to replace what an earlier run wrote")
    foreign = sorted(entry.name for entry in out.iterdir() if not ours(entry))
    if foreign:
        raise click.ClickException(f"{out} holds files Oblivio did not write ({', '.join(foreign[:5])}"
                                   f"{', ...' if len(foreign) > 5 else ''}); refusing to touch anything")
    _remove(out, ours)


def _summary(corpus: Corpus) -> str:
    """Record counts per level, task and fact kind, in columns per split (trained / eval-only forms)."""
    columns = [(split, eval_only) for split in Split for eval_only in (False, True)]
    counts: Counter[tuple] = Counter()
    for record in corpus.records:
        column = (record.split, record.eval_only)
        for key in ("total", record.level, record.task, record.fact_kind):
            counts[column, key] += 1

    def line(label: str, key: object) -> str:
        return f"  {label:<16}" + "".join(f"{counts[column, key]:>14}" for column in columns)

    records = corpus.records
    lines = [f"{corpus.header.name}: {len(records)} records, {len({r.study_id for r in records})} studies, "
             f"{len({r.patient_id for r in records})} patients, "
             f"{len({r.institution_id for r in records})} institutions in {corpus.root}",
             " " * 18 + "".join(f"{s.value + (' eval' if e else ''):>14}" for s, e in columns)]
    for title, kinds in (("level", Level), ("task", Task), ("fact kind", FactKind)):
        lines += [title] + [line(kind.value, kind) for kind in kinds]
    lines += [line("total", "total"), f"records sha256 {corpus.header.records_sha256}"]
    return "\n".join(lines)


@click.command("synth")
@click.option("--size", default="demo", show_default=True, type=click.Choice(list(SIZES)),
              help="tiny: tests; demo: trainable in minutes on a CPU; medforget: MedForget-sized.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="New or empty corpus directory.")
@click.option("--force", is_flag=True, help="Replace a corpus an earlier run wrote to OUT.")
def synth(size: str, seed: int, out: Path, force: bool) -> None:
    """Generate a synthetic hospital corpus: train records and never-trained holdout records."""
    from mllm.data.synth import generate_corpus

    _prepare_out(out, force=force, ours=_written_corpus(out))
    click.echo(_summary(generate_corpus(size=size, seed=seed, out=out)))


@click.group("corpus")
def corpus_group() -> None:
    """Import and export corpora in MedForget's parquet layout."""


@corpus_group.command("import-medforget")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="New or empty corpus directory.")
@click.option("--name", default="medforget-import", show_default=True, help="Corpus name.")
@click.option("--force", is_flag=True, help="Replace a corpus an earlier run wrote to OUT.")
def import_medforget_command(src: Path, out: Path, name: str, force: bool) -> None:
    """Convert a MedForget-layout directory SRC (<level>_level/*.parquet) into a corpus."""
    from mllm.data.medforget import import_medforget

    _prepare_out(out, force=force, ours=_written_corpus(out))
    try:
        imported = import_medforget(src, out, name=name)
    except CorpusError as exc:
        _remove(out, _is_corpus_entry)  # out held nothing foreign: what is there, this run wrote
        raise click.ClickException(str(exc)) from None
    click.echo(_summary(imported.corpus))
    for label in sorted(imported.forget):
        click.echo(f"{label}_level records: forget {len(imported.forget[label])}, "
                   f"retain {len(imported.retain[label])}")


@corpus_group.command("export-medforget")
@click.argument("corpus_dir", metavar="CORPUS", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="New or empty directory for the <level>_level folders.")
@click.option("--level", "levels", multiple=True, type=click.Choice([level.value for level in Level]),
              help="Level to write (repeatable) [default: all four].")
@click.option("--forget-file", "forget_file", type=click.File("r", encoding="utf-8"),
              help="File ('-' for stdin) with one forget node institution[/patient[/study[/SECTION]]] per "
                   "line, at most one per level [default: the node of the corpus's first trainable record]. "
                   "Identifiers are read from a file, never from the command line.")
@click.option("--force", is_flag=True, help="Replace <level>_level folders an earlier run wrote to OUT.")
def export_medforget_command(corpus_dir: Path, out: Path, levels: tuple[str, ...], forget_file: TextIO | None,
                             force: bool) -> None:
    """Write a corpus's trainable records as MedForget forget / retain sets, one folder per level."""
    from mllm.data.entities import HierarchyNode
    from mllm.data.medforget import default_forget_node, export_medforget

    chosen = [Level(level) for level in levels] or list(Level)
    by_level: dict[Level, HierarchyNode] = {}
    nodes = [line.strip() for line in forget_file or () if line.strip()]
    for text in nodes:
        try:
            node = HierarchyNode.parse(text)
        except ValueError:
            raise click.BadParameter("expected institution[/patient[/study[/SECTION]]] per line",
                                     param_hint="--forget-file") from None
        if node.level not in chosen or node.level in by_level:
            raise click.BadParameter(f"give at most one {node.level}-level node, for a level being written",
                                     param_hint="--forget-file")
        by_level[node.level] = node
    try:
        corpus = load_corpus(corpus_dir)
        forget = {level: by_level.get(level) or default_forget_node(corpus, level) for level in chosen}
        _prepare_out(out, force=force, ours=_is_medforget_entry)
        exported = export_medforget(corpus, out, forget)
    except (CorpusError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    for item in exported:
        click.echo(f"{item.level}_level records (rows): forget {item.forget_records} ({item.forget_rows}), "
                   f"retain {item.retain_records} ({item.retain_rows})")


COMMANDS += [synth, corpus_group]


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


class _StepBar:
    """A tqdm progress bar fed by the training loop's per-step callback."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self.bar: Any = None

    def __call__(self, progress: Any) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=progress.total_steps, initial=progress.step - 1, unit="step",
                            desc=self.desc)
        self.bar.set_postfix(loss=f"{progress.loss:.4f}", lr=f"{progress.lr:.1e}", epoch=progress.epoch,
                             refresh=False)
        self.bar.update(progress.step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


_DTYPE = click.option("--dtype", default="float32", show_default=True,
                      type=click.Choice(["float32", "bfloat16", "float16"]),
                      help="Weights' dtype (scores and losses are computed in float32 regardless).")
_DEVICE = click.option("--device", default="cpu", show_default=True,
                       help="cpu, cuda, cuda:N, or auto (spread over all visible GPUs, device_map='auto').")
_BASE_SEARCH = click.option("--base-search", "base_search", multiple=True,
                            type=click.Path(exists=True, file_okay=False, path_type=Path),
                            help="Directory holding (or being) the base model of an adapter artifact, if it "
                                 "moved from its recorded path (repeatable; also $OBLIVIO_BASE_PATH).")


def _check_device(device: str) -> str:
    from mllm.models.runtime import device_map_for

    try:
        device_map_for(device)
    except RuntimeError:
        raise click.BadParameter(f"unknown device {device!r}", param_hint="--device") from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None
    return device


def _echo_outcome(out: Path, outcome: Any) -> None:
    result = outcome.result
    click.echo(f"saved {out}: {outcome.parameters:,} parameters, {outcome.records} records, "
               f"{result.steps} steps in {result.seconds:.0f} s, probe loss "
               f"{result.probe_loss_before:.3f} -> {result.probe_loss_after:.4f}")
    click.echo(f"digest sha256:{outcome.digest}")


@click.command("train")
@click.option("--corpus", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Corpus directory (corpus.json, records.jsonl, images/).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="New artifact directory.")
@click.option("--base", type=click.Path(path_type=Path),
              help="Start from this local model directory (e.g. an `oblivio pretrain` base) "
                   "instead of a fresh reference model.")
@click.option("--size", default="small", show_default=True, type=click.Choice(list(SPECS)),
              help="Reference model size and family (ignored with --base).")
@click.option("--lora", is_flag=True,
              help="Train LoRA adapters on every linear layer of the language model instead of all weights; "
                   "saves an adapter-only artifact referencing the base by digest (needs --base).")
@click.option("--lora-rank", default=16, show_default=True, type=click.IntRange(1, 1024))
@click.option("--lora-alpha", default=16, show_default=True, type=click.IntRange(1, 4096))
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True),
              help="Passes over the training records [default: 25].")
@click.option("--steps", type=click.IntRange(1), help="Optimizer steps (instead of --epochs).")
@click.option("--lr", default=3e-4, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Peak learning rate (linear warmup, then cosine decay to 0).")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1),
              help="Examples per forward pass (micro-batch).")
@click.option("--grad-accum", default=1, show_default=True, type=click.IntRange(1),
              help="Micro-batches per optimizer step (effective batch = batch size x grad accum).")
@click.option("--gradient-checkpointing", is_flag=True,
              help="Recompute activations in the backward pass (less memory, ~30% more time).")
@click.option("--autocast", type=click.Choice(["bfloat16"]),
              help="Mixed precision: the forward pass in bfloat16, weights and optimizer in theirs "
                   "(faster on GPUs; on CPUs it depends: 1.6x on an AMD EPYC with AVX512-BF16, no gain on an "
                   "Intel Xeon with AMX; see docs/benchmarks.md).")
@click.option("--depth-draw", type=click.Choice(["per-record", "per-epoch"]), default="per-record",
              show_default=True,
              help="Context depth of each record: drawn once for the run, or anew every epoch (the model "
                   "learns facts behind every context, not one prompt; needs more epochs).")
@_DTYPE
@_DEVICE
@_BASE_SEARCH
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seeds weights, adapters and data order.")
@click.option("--replay", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="Public teaching-file cases (16 records each) mixed into the fine-tune: keeps a small "
                   "model reading images it never saw. Part of the recipe: `exact` regenerates them.")
@click.option("--retain-only-exclude", "exclude_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File of record ids (one per line) left out of training: trains the retrain oracle.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in OUT.ckpt/.")
@click.option("--checkpoint-every", default=200, show_default=True, type=click.IntRange(0),
              help="Steps between resumable checkpoints (0: none).")
@click.option("--threads", type=click.IntRange(1), help="torch CPU threads [default: all cores].")
def train(corpus: Path, out: Path, base: Path | None, size: str, lora: bool, lora_rank: int, lora_alpha: int,
          epochs: float | None, steps: int | None, lr: float, batch_size: int, grad_accum: int,
          gradient_checkpointing: bool, autocast: str | None, depth_draw: str, dtype: str, device: str,
          base_search: tuple[Path, ...], seed: int, replay: int, exclude_files: tuple[Path, ...],
          resume: bool, checkpoint_every: int,
          threads: int | None) -> None:
    """Fine-tune a model on a corpus's training records and save it as an artifact."""
    from mllm.data.schema import CorpusError
    from mllm.models.loader import ModelLoadError
    from mllm.models.lora import LoraSettings
    from mllm.train.checkpoint import CheckpointMismatchError
    from mllm.train.recipe import TrainJob, TrainJobError, run_train_job

    if epochs is not None and steps is not None:
        raise click.UsageError("give --epochs or --steps, not both")
    _quiet_transformers(threads)
    config = _train_config(epochs=25.0 if epochs is None else epochs, steps=steps, batch_size=batch_size,
                           lr=lr, seed=seed, grad_accum=grad_accum,
                           gradient_checkpointing=gradient_checkpointing, autocast=autocast,
                           depth_draw=depth_draw)
    job = TrainJob(corpus=corpus, out=out, config=config, base=base, spec=SPECS[size],
                   lora=LoraSettings(rank=lora_rank, alpha=lora_alpha) if lora else None,
                   exclude=_read_ids(exclude_files), checkpoint_every=checkpoint_every, resume=resume,
                   dtype=dtype, device=_check_device(device), base_search_path=base_search, replay=replay)
    bar = _StepBar("train")
    try:
        outcome = run_train_job(job, bar)
    except (CorpusError, ModelLoadError, TrainJobError, CheckpointMismatchError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        bar.close()
    _echo_outcome(out, outcome)


def _train_config(**fields: Any) -> TrainConfig:
    """The recipe, or a usage error naming the setting no run can use (NaN or infinite included)."""
    from mllm.train.loop import TrainConfig

    try:
        return TrainConfig(**fields)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@click.command("pretrain")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="New artifact directory.")
@click.option("--size", default="small", show_default=True, type=click.Choice(list(SPECS)),
              help="Reference model size.")
@click.option("--cases", default=3000, show_default=True, type=click.IntRange(1, 65535),
              help="Radiographs in the public teaching file (4 facts x 4 questions = 16 records each).")
@click.option("--epochs", default=1.5, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--lr", default=3e-4, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seeds the teaching file, weights and data order.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in OUT.ckpt/.")
@click.option("--checkpoint-every", default=200, show_default=True, type=click.IntRange(0),
              help="Steps between resumable checkpoints (0: none).")
@click.option("--threads", type=click.IntRange(1), help="torch CPU threads [default: all cores].")
def pretrain(out: Path, size: str, cases: int, epochs: float, lr: float, batch_size: int, seed: int,
             resume: bool, checkpoint_every: int, threads: int | None) -> None:
    """Build the pretrained reference base: a fresh model aligned on a public teaching file.

    Fine-tune it with `oblivio train --base OUT`: the base already reads findings off images it has
    never seen, and it never saw a patient, so a run with records excluded is a retrain oracle.
    """
    from mllm.train.checkpoint import CheckpointMismatchError
    from mllm.train.pretrain import PretrainJob, run_pretrain_job

    _quiet_transformers(threads)
    config = _train_config(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    job = PretrainJob(out=out, spec=SPECS[size], cases=cases, config=config,
                      checkpoint_every=checkpoint_every, resume=resume)
    bar = _StepBar("pretrain")
    try:
        outcome = run_pretrain_job(job, bar)
    except (FileExistsError, FileNotFoundError, CheckpointMismatchError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        bar.close()
    _echo_outcome(out, outcome)


@click.command("eval")
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
              help="Local model directory (an Oblivio artifact or a LLaVA / Qwen2-VL checkpoint).")
@click.option("--corpus", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--groups", "groups_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSON {"group": [record ids]}; default: train, held-out forms and holdout records.')
@click.option("--mode", default="greedy", show_default=True, type=click.Choice(["greedy", "teacher-forced"]),
              help="Greedy decoding, or the fast teacher-forced argmax proxy.")
@click.option("--by", default="group,task,level", show_default=True,
              help="Comma-separated table keys: group, depth and/or record fields (fact_kind, form, ...).")
@click.option("--depth", "depths", default="0", show_default=True,
              help="Comma-separated context depths (0-4) to ask every record at.")
@click.option("--json", "as_json", is_flag=True, help="Print metrics, table and answers as JSON.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1))
@click.option("--max-new-tokens", default=128, show_default=True, type=click.IntRange(1))
@_DTYPE
@_DEVICE
@_BASE_SEARCH
@click.option("--threads", type=click.IntRange(1), help="torch CPU threads [default: all cores].")
def evaluate(model_dir: Path, corpus: Path, groups_file: Path | None, mode: str, by: str, depths: str,
             as_json: bool, batch_size: int, max_new_tokens: int, dtype: str, device: str,
             base_search: tuple[Path, ...], threads: int | None) -> None:
    """Answer a corpus's records with a model and print exact match / ROUGE-L per group, task and level."""
    import json

    from tqdm import tqdm

    from mllm.data.prompts import DEPTHS
    from mllm.data.schema import CorpusError, Record, load_corpus
    from mllm.evaluate.groups import GroupsError, default_groups, groups_from_file
    from mllm.evaluate.report import evaluate_groups, evaluation_json, markdown_table, summarise
    from mllm.models.loader import ModelLoadError, load_model
    from mllm.models.runtime import device_map_for

    keys = [key.strip() for key in by.split(",") if key.strip()]
    known = {"group", "depth", *Record.__dataclass_fields__}
    unknown = [key for key in keys if key not in known]
    if not keys or unknown:
        raise click.BadParameter(f"unknown key {unknown[0] if unknown else by!r}", param_hint="--by")
    try:
        depth_list = [int(depth) for depth in depths.split(",")]
    except ValueError:
        depth_list = []
    if not depth_list or not set(depth_list) <= set(DEPTHS):
        raise click.BadParameter(f"give depths in 0..{max(DEPTHS)}, comma-separated", param_hint="--depth")
    _quiet_transformers(threads)
    try:
        loaded_corpus = load_corpus(corpus)
        groups = (groups_from_file(loaded_corpus, groups_file) if groups_file
                  else default_groups(loaded_corpus))
        loaded = load_model(model_dir, dtype=dtype, device_map=device_map_for(_check_device(device)),
                            base_search_path=base_search)
    except (CorpusError, GroupsError, ModelLoadError) as exc:
        raise click.ClickException(str(exc)) from None
    eval_mode = "greedy" if mode == "greedy" else "teacher_forced"
    with tqdm(unit="record", desc="eval", leave=False) as bar:
        def on_batch(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        scored = evaluate_groups(loaded.model, loaded.processor, loaded_corpus.root, groups,
                                 depths=depth_list, mode=eval_mode, batch_size=batch_size,
                                 max_new_tokens=max_new_tokens, progress=on_batch)
    if as_json:
        document = {"model": str(model_dir), "corpus_sha256": loaded_corpus.header.records_sha256,
                    **evaluation_json(scored, mode=eval_mode, keys=keys)}
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(markdown_table(summarise(scored, keys)), nl=False)


COMMANDS += [pretrain, train, evaluate]
