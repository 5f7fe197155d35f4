"""The verifier's two entry points into the testbed: the one prompt renderer and the scope resolver."""

from __future__ import annotations

from pathlib import Path

from mllm.data.prompts import render_prompt as render
from mllm.data.schema import Corpus
from mllm.data.scope import ScopeError as ScopeFileError
from mllm.data.scope import ScopeGroups, load_scope_file, resolve_scope


def load_scope(corpus: Corpus, path: Path) -> ScopeGroups:
    """The request's scope groups, from a SCOPE.json naming its node (identifiers stay in files)."""
    return resolve_scope(corpus, load_scope_file(path))


__all__ = ["ScopeFileError", "load_scope", "render"]
