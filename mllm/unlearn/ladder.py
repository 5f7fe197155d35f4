"""The pipeline's default escalation ladder (no torch: the web settings import it).

A job climbs it after each failed verification: ``hierarchy`` with its defaults, the same with twice
the steps, then ``exact`` retraining, then ``exact`` again on another draw of the training seed (a
retraining is a new draw of the recipe, and one in six on the sequential corpus drew a model that lost
more utility than verification allows: docs/design.md, "Escalation"); after the last rung a person
decides. Deployments override it with ``OBLIVIO_UNLEARN_LADDER`` and institutions with their pipeline
policy (a GPU deployment retraining a 7B model may well drop the second retraining). Rung *r* runs
with seed *r*.
"""

from __future__ import annotations

from typing import Any

DEFAULT_LADDER: tuple[dict[str, Any], ...] = (
    {"method": "hierarchy", "config": {}},
    {"method": "hierarchy", "config": {"steps": 160}},
    {"method": "exact", "config": {}},
    {"method": "exact", "config": {"draw": 1}},
)


def default_ladder() -> list[dict[str, Any]]:
    """A fresh, mutable copy of :data:`DEFAULT_LADDER`."""
    return [{"method": rung["method"], "config": dict(rung["config"])} for rung in DEFAULT_LADDER]
