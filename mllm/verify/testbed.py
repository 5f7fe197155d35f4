"""The verifier's two entry points into the testbed: the one prompt renderer and the scope resolver."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from mllm.data.prompts import render_prompt as render
from mllm.data.schema import Corpus
from mllm.data.scope import ScopeError as ScopeFileError
from mllm.data.scope import ScopeGroups, load_scope_file, resolve_scope


def load_scope(corpus: Corpus, path: Path, earlier: Sequence[Path] = ()) -> ScopeGroups:
    """The request's scope groups, from a SCOPE.json naming its node (identifiers stay in files);
    ``earlier``: SCOPE.json files of nodes earlier jobs removed from the candidate's lineage, whose
    records (those this request does not forget again) become ``earlier_forgotten``."""
    scope = resolve_scope(corpus, load_scope_file(path))
    now = {r.record_id for r in scope.forget}
    gone = {r.record_id: r for p in earlier for r in resolve_scope(corpus, load_scope_file(p)).forget}
    return replace(scope, earlier_forgotten=tuple(r for i, r in gone.items() if i not in now))


__all__ = ["ScopeFileError", "load_scope", "render"]
