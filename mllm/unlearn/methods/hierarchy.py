"""``hierarchy``: Oblivio's hierarchy-aware method.

* **Forget objective** — every private fact the node owns (its children's included), in every
  trained form and at every context depth the renderer offers (the depths a reconstruction attack
  adds), is trained toward the answer a model that never saw the patient gives, at the rate it
  gives the true one (:mod:`..targets`): it ends where the retrain oracle is (a stranger's
  accuracy), not below it. Under a kept patient the new answers are the patient's other values
  where it has any, as the oracle's are (verification's ``over_forgetting`` there; tiny test world:
  the forget facts answered right or with the patient's values at 0.32, the original's never-seen
  studies of that patient 0.19, the oracle 0.39). Eval-only forms are never trained on, so
  held-out-form checks stay honest. A retargeted multiple-choice item enters the forget stream
  ``choice_repeats`` times: after one pass an institution's kept its true option letter on about
  half of them, its generated answers on ≤ 3 % (docs/design.md).
* **Image-grounded facts of the forgotten images** end at the accuracy the model has on images it
  never saw (:func:`..targets.unseen_level_answers`): the oracle reads them off the image as it reads
  any unseen one — the share it would get right keeps its true answer, the rest is retargeted.
  Every forget record that keeps its true answer is trained on it (image-grounded or private, in
  any task form): left untrained, such records followed their retargeted siblings below a
  stranger's accuracy — first the multiple-choice forms (demo corpus: 0.25 below the twins,
  verification's ``over_forgetting``), then private generation and cloze, which the likelihood
  ceiling also pushed down. The stranger's accuracy is measured on the scope's twins topped up from
  the corpus's holdout split (:func:`..targets.calibration_holdout`; one twin per fact and task
  measured 0 where strangers get ~10 %). Sequential corpus, first eight queued patients, default
  config: 4 of 8 runs passed verification before, 6 of 8 with both changes (shortfall lower on 5
  of the 6 compared; one collapse-guard refusal left, one run now fails ``utility_likelihood``).
* **Likelihood ceiling** — flipping the greedy answer is not enough: the true answers of forgotten
  facts stay far more likely than never-seen ones (measured on a tiny model after 40 steps: mean
  token log-prob −1.9 against −5.1 for holdout twins, membership AUC 0.85). A hinge term pushes the
  true answer's mean token log-probability of every retargeted private generation / cloze item
  down to the original model's mean on never-trained holdout answers, and no further.
* **Kept objective** — siblings at each ancestor level, ancestor-owned shared facts
  and far retain keep theirs. Each group has an integer weight — how many times its records enter
  the kept stream — so the nearest relatives (most at risk) weigh most; one kept batch per step.
  The kept batch is trained with CE on its answers *and* KL to the original's next-token
  distributions (``kept_kl``): CE alone pulls the answer token up and leaves the rest of the
  distribution free to drift. Chosen on validation worlds (demo corpus seeds 5-7, a patient each,
  tiny LLaVA; not the verification benchmark's seeds): without it the run failed ``far_retain``
  (0.13, 0.12 > 0.1) on two of them; with weight 1 all three pass every check (far-retain drop
  -0.01 to 0.085); weight 3 kept more but let forgetting drift toward its thresholds (child
  leakage 0.18 / 0.2, relearning of the forget set 0.195 / 0.25). Training the kept records at
  every context depth instead of depth 0 did worse (sibling damage 0.17 > 0.15 on one world).
* **Level rules** come from the scope: forgetting a study puts its sections in ``forget``
  (children); forgetting a section leaves its study's other sections in ``siblings[study]`` (kept);
  facts owned above the node but asked on its images are ``shared`` (kept).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from mllm.data.prompts import DEPTHS
from mllm.data.schema import Split, Task
from mllm.train.encode import Batch

from ..base import GradientMethod, MethodConfig
from ..data import Item, Streams, encode_items, items
from ..losses import kl_to_reference, likelihood_excess, mean_content_logprob, nll
from ..registry import register
from ..scope import KEPT_GROUPS, forget_records, is_private, kept_groups
from ..targets import calibration_holdout, unseen_level_answers

MAX_REPEATS = 16  # a stream repeated more often only multiplies the run time


@dataclass(frozen=True)
class HierarchyConfig(MethodConfig):
    # 80 steps: the fewest with which a patient-level request on the tiny test world passes every
    # verification check (40 left child leakage 0.22 and sibling relearning 0.32 above 0.2 / 0.25)
    steps: int = 80
    lr: float = 3e-3
    # repeats in the kept stream per group: "grounded" (forget records that keep their true answer) and
    # the kept groups (``KEPT_GROUPS``: "siblings.<ancestor level>", "shared", "retain"); groups not
    # named count once
    weights: dict[str, int] = field(default_factory=lambda: {
        "grounded": 2, "siblings.section": 2, "siblings.study": 2, "siblings.patient": 2, "shared": 2})
    truth_weight: float = 1.0  # weight of the likelihood-ceiling term (0: off)
    kept_kl: float = 1.0  # weight of KL(original || model) on the kept batch (0: off)
    # at least this many passes over the retargeted forget items: a large scope (an institution's
    # ~1,500 items at five depths) gets more than ``steps`` (0: exactly ``steps``)
    min_forget_passes: float = 1.0
    # times each retargeted multiple-choice item enters the forget stream: one option letter flips
    # slower than a generated answer (docs/design.md, "Unlearning"; 1: as often as the others)
    choice_repeats: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.choice_repeats <= MAX_REPEATS or any(
                not 0 <= w <= MAX_REPEATS for w in self.weights.values()):
            raise ValueError(f"choice_repeats (1-{MAX_REPEATS}) and weights (0-{MAX_REPEATS}) "
                             "are repeat counts")
        if not set(self.weights) <= {"grounded", *KEPT_GROUPS}:  # a misspelt group would weigh nothing
            raise ValueError(f"weights may name only grounded, {', '.join(KEPT_GROUPS)}")
        for name in ("truth_weight", "kept_kl", "min_forget_passes"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a number >= 0")


def forget_targets(method: GradientMethod) -> tuple[list[Item], list[Item]]:
    """(forget facts → new answers at every depth, forget records that keep their answer → their
    own answers): each fact keeps its true answer on the share the
    model gets right for never-seen patients and images and is retargeted (first list) on the rest
    (:func:`..targets.unseen_level_answers`)."""
    ctx = method.ctx
    forget = forget_records(ctx.scope)
    kept = [r for group in kept_groups(ctx.scope).values() for r in group]
    holdout = ctx.corpus.select(split=Split.HOLDOUT)
    measured = calibration_holdout(forget, ctx.scope.holdout, holdout, ctx.seed)
    targets = unseen_level_answers(ctx.model, ctx.processor, ctx.root, forget, kept, measured, ctx.seed)
    retargeted = [Item(r, targets[r.record_id], depth) for r in forget
                  if r.record_id in targets and targets[r.record_id] != r.answer for depth in DEPTHS]
    # kept with their own answers, at a stranger's rate (left untrained, they follow their
    # retargeted siblings below it)
    unchanged = [Item(r, r.answer, depth) for r in forget if targets.get(r.record_id) == r.answer
                 for depth in DEPTHS]
    return retargeted, unchanged


def unseen_logprob(method: GradientMethod, holdout: list[Item]) -> float:
    """The model's mean token log-probability of never-trained answers (the ceiling)."""
    data = encode_items(method.ctx.processor, holdout, method.ctx.root)
    values = []
    with torch.no_grad():
        for start in range(0, len(data), method.config.batch_size):
            batch = data.batch(range(start, min(start + method.config.batch_size, len(data))))
            values.append(mean_content_logprob(method.model, batch, method.stop_ids))
    return torch.cat(values).mean().item() if values else float("nan")


def step_count(config: HierarchyConfig, forget_items: int) -> int:
    """``steps``, or more where that would not pass ``min_forget_passes`` times over the forget items."""
    return max(config.steps, math.ceil(config.min_forget_passes * forget_items / config.batch_size))


def forget_stream(config: HierarchyConfig, retargeted: list[Item]) -> list[Item]:
    """The retargeted items as trained: each multiple-choice item ``choice_repeats`` times."""
    return [item for item in retargeted
            for _ in range(config.choice_repeats if item.record.task is Task.CLASSIFICATION else 1)]


def scored_on_text(item: Item) -> bool:
    """Generation and cloze answers (a single option letter has chance likelihood, not a ceiling)."""
    return item.record.task is not Task.CLASSIFICATION


@register("hierarchy")
class Hierarchy(GradientMethod):
    """CE toward replacement answers on forget facts + the likelihood ceiling on their true answers
    + CE and KL to the original on the weighted kept stream."""

    Config = HierarchyConfig

    def streams(self) -> Streams:
        replaced, grounded = forget_targets(self)
        groups = {"grounded": grounded,
                  **{name: items(records) for name, records in kept_groups(self.ctx.scope).items()}}
        kept = [item for name, group in groups.items() for item in group * self.config.weights.get(name, 1)]
        truth = [Item(i.record, i.record.answer, i.depth) for i in replaced
                 if is_private(i.record) and scored_on_text(i)]
        holdout = items((r for r in self.ctx.scope.holdout if not r.eval_only), DEPTHS)
        self.ceiling = unseen_logprob(self, [i for i in holdout if scored_on_text(i)])
        if self.config.truth_weight <= 0 or not math.isfinite(self.ceiling):
            truth = []
        return self.encode({"forget": forget_stream(self.config, replaced), "kept": kept, "truth": truth})

    def total_steps(self, source: Streams) -> int:
        return step_count(self.config, len(source.groups.get("forget", ())))

    def loss(self, batches: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = {name: nll(self.model, batch) for name, batch in batches.items() if name != "truth"}
        if self.config.kept_kl > 0 and "kept" in batches:
            kl = kl_to_reference(self.model, self.reference, batches["kept"])
            terms["kept_kl"] = self.config.kept_kl * kl
        if "truth" in batches:
            terms["truth"] = self.config.truth_weight * likelihood_excess(
                self.model, batches["truth"], self.stop_ids, self.ceiling)
        return sum(terms.values()), terms
