"""``oblivio unlearn``: thin wrapper around :func:`mllm.unlearn.unlearn`.

Identifiers only travel in files (``--forget-file SCOPE.json``), never on the command line, and
error messages never repeat them. Exit 0 on success, 1 when the run fails (collapse guard, no-op),
2 on bad input (click's usage errors).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

COMMANDS: list[click.Command] = []


def _read_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.BadParameter(f"cannot read a JSON object ({type(exc).__name__})",
                                 param_hint="--config") from None
    if not isinstance(data, dict):
        raise click.BadParameter("must hold a JSON object", param_hint="--config")
    return data


@click.command("unlearn")
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
              help="Model artifact to unlearn from (a sharded model for --method exact).")
@click.option("--corpus", "corpus_dir", required=True, type=click.Path(path_type=Path),
              help="The corpus the model was trained on.")
@click.option("--forget-file", required=True, type=click.Path(path_type=Path),
              help="SCOPE.json naming the node to forget (identifiers stay in the file).")
@click.option("--method", required=True, help="Unlearning method (see --list-methods).")
@click.option("--config", "config_file", type=click.Path(path_type=Path),
              help="JSON object of method settings.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="New artifact directory.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**31 - 1))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--threads", type=click.IntRange(1), help="torch CPU threads [default: all cores].")
def unlearn_command(model_dir: Path, corpus_dir: Path, forget_file: Path, method: str,
                    config_file: Path | None, out: Path, seed: int, as_json: bool,
                    threads: int | None) -> None:
    """Unlearn the scope of FORGET_FILE from MODEL; write a new artifact to OUT."""
    import torch
    from transformers.utils import logging

    from mllm.data.schema import CorpusError, load_corpus
    from mllm.models.loader import ModelLoadError
    from mllm.train.retrain import RecipeError

    from . import CollapseError, ConfigError, NoOpUnlearningError, UnknownMethodError, unlearn
    from .registry import method_class
    from .scope import ScopeError, load_scope_file, resolve_scope
    from .shards import ShardError

    logging.disable_progress_bar()
    if threads:
        torch.set_num_threads(threads)
    try:
        method_class(method)
    except UnknownMethodError as exc:
        raise click.BadParameter(str(exc), param_hint="--method") from None
    if out.exists():
        raise click.BadParameter("already exists; choose a new directory", param_hint="--out")
    config = _read_config(config_file)
    try:
        node = load_scope_file(forget_file)
    except ScopeError as exc:
        raise click.BadParameter(str(exc), param_hint="--forget-file") from None
    try:
        corpus = load_corpus(corpus_dir)
    except CorpusError as exc:
        raise click.BadParameter(f"not a readable corpus ({exc.field_name or 'format'})",
                                 param_hint="--corpus") from None
    try:
        scope = resolve_scope(corpus, node)
    except ScopeError as exc:
        raise click.BadParameter(str(exc), param_hint="--forget-file") from None
    try:
        result = unlearn(model_dir=model_dir, corpus=corpus, scope=scope, method=method, config=config,
                         out=out, seed=seed)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from None
    except (ModelLoadError, ShardError, RecipeError) as exc:
        raise click.BadParameter(str(exc), param_hint="--model") from None
    except (CollapseError, NoOpUnlearningError) as exc:
        raise click.ClickException(f"unlearning failed, nothing written: {exc}") from None
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    guard = result.guard
    click.echo(f"{method}: {len(result.steps)} steps in {result.seconds:.1f} s -> {out}")
    click.echo(f"digest {result.digest}")
    before, after = guard.original, guard.candidate
    click.echo(f"collapse guard passed: retain {before.retain_accuracy:.3f} -> {after.retain_accuracy:.3f}, "
               f"holdout image-grounded {before.holdout_grounded_accuracy:.3f} -> "
               f"{after.holdout_grounded_accuracy:.3f}")


COMMANDS.append(unlearn_command)
