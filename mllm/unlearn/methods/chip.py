"""``chip``: MedForget's training-free method (activation-direction projection), the anchor to beat.

1. Record the outputs of the edited modules — the MLP ``down_proj`` of the last language layers and
   the last linear of the vision-language projector (``multi_modal_projector`` / Qwen's ``merger``)
   — on forget and on kept records (prompt + answer). Each example gives one vector per module:
   α·mean over vision-token positions + (1 − α)·mean over text positions (α = 0.3); the projector
   only sees vision tokens.
2. Score neurons by mean |activation| on forget − on kept; keep the top k % (k = 10).
3. Directions: each forget example's vector minus the mean of the closest siblings', restricted to
   those neurons; SVD keeping τ = 0.95 of the variance gives an orthonormal basis Q.
4. Project: W' = (I − QQᵀ)W, as MedForget's formula (biases stay: a constant offset is the same for
   target and siblings, so it carries none of the forget-specific direction). The edit is low-rank,
   ΔW = −Q(QᵀW), so it is stored as a LoRA adapter (B = −Q, A = QᵀW, scaling 1): adapter-only, and
   the original stays one ``disable_adapter()`` away.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from mllm.data.schema import Record

from ..base import Method, MethodConfig, Progress, ShouldCancel, StepLog, UnlearnCancelled
from ..data import encode_items, items
from ..registry import register
from ..scope import forget_records, kept_groups, sample

_DOWN_PROJ = re.compile(r".*language_model.*layers\.(\d+)\.mlp\.down_proj$")
_PROJECTOR = ("multi_modal_projector", "merger")


@dataclass(frozen=True)
class ChipConfig(MethodConfig):
    alpha_vision: float = 0.3
    top_k: float = 0.10
    tau: float = 0.95
    layer_fraction: float = 0.25  # MedForget edits layers 22-27 of 28
    projector: bool = True
    kept_sample: int = 64


def target_modules(model: Any, layer_fraction: float, projector: bool) -> list[str]:
    """Module names to edit: ``down_proj`` of the last layers, and the projector's last linear."""
    layers = {}
    last_projector = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            match = _DOWN_PROJ.match(name)
            if match:
                layers[int(match.group(1))] = name
            elif projector and any(part in name for part in _PROJECTOR):
                last_projector = name
    count = max(1, round(layer_fraction * len(layers)))
    names = [layers[i] for i in sorted(layers)[-count:]]
    return names + ([last_projector] if last_projector else [])


@torch.no_grad()
def example_activations(model: Any, processor: Any, root: Any, records: list[Record], modules: list[str],
                        alpha: float, batch_size: int) -> dict[str, torch.Tensor]:
    """Per module, one vector per example ``[N, d]``: α·vision-token mean + (1 − α)·text-token mean."""
    data = encode_items(processor, items(records), root)
    image_token = processor.tokenizer.convert_tokens_to_ids(processor.tokenizer.image_token)
    by_name = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}
    hooks = [by_name[name].register_forward_hook(
        lambda _m, _i, output, name=name: captured.__setitem__(name, output.float())) for name in modules]
    out: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
    try:
        for start in range(0, len(data), batch_size):
            batch = data.batch(range(start, min(start + batch_size, len(data))))
            model(**batch.model_inputs())
            vision = batch.input_ids == image_token
            text = batch.attention_mask.bool() & ~vision
            for name in modules:
                acts = captured[name]
                if acts.shape[:2] == vision.shape:  # language layer: [B, T, d]
                    v = (acts * vision[..., None]).sum(1) / vision.sum(1, keepdim=True).clamp(min=1)
                    t = (acts * text[..., None]).sum(1) / text.sum(1, keepdim=True).clamp(min=1)
                    out[name].append(alpha * v + (1 - alpha) * t)
                else:  # projector: vision tokens of every image, [B * tokens, d]
                    out[name].append(acts.reshape(vision.shape[0], -1, acts.shape[-1]).mean(1))
    finally:
        for hook in hooks:
            hook.remove()
    return {name: torch.cat(vectors) for name, vectors in out.items()}


def projection_basis(forget: torch.Tensor, kept: torch.Tensor, siblings: torch.Tensor, top_k: float,
                     tau: float) -> torch.Tensor:
    """Orthonormal Q ``[d, r]`` of the forget-specific directions on the top-k % neurons."""
    score = forget.abs().mean(0) - kept.abs().mean(0)
    count = max(1, round(top_k * score.numel()))
    neurons = torch.zeros_like(score, dtype=torch.bool)
    neurons[score.topk(count).indices] = True
    directions = (forget - siblings.mean(0)) * neurons
    _, sigma, vh = torch.linalg.svd(directions.double(), full_matrices=False)
    energy = sigma.square().cumsum(0) / sigma.square().sum().clamp(min=1e-30)
    rank = int((energy < tau).sum().item()) + 1
    return vh[:rank].T.float()


@torch.no_grad()
def projection_adapter(model: Any, bases: dict[str, torch.Tensor]) -> Any:
    """A PEFT model whose adapter on each module turns W into W' = (I − QQᵀ)W."""
    rank = max(q.shape[1] for q in bases.values())
    pattern = "^(" + "|".join(re.escape(name) for name in bases) + ")$"
    peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, bias="none",
                                                  target_modules=pattern))
    wrapped = dict(peft_model.base_model.model.named_modules())
    for name, q in bases.items():
        layer = wrapped[name]
        weight = layer.base_layer.weight.float()
        padded = torch.zeros(q.shape[0], rank)
        padded[:, :q.shape[1]] = q
        layer.lora_A["default"].weight.copy_(padded.T @ weight)
        layer.lora_B["default"].weight.copy_(-padded)
    return peft_model


@register("chip")
class Chip(Method):
    Config = ChipConfig

    def run(self, *, progress: Progress | None = None, should_cancel: ShouldCancel | None = None) -> Any:
        cfg, ctx = self.config, self.ctx
        if isinstance(ctx.model, PeftModel):
            raise ValueError("chip edits a full model's weights: pass a full artifact, "
                             "not an adapter artifact")
        model = ctx.model.eval()
        modules = target_modules(model, cfg.layer_fraction, cfg.projector)
        forget = forget_records(ctx.scope)
        groups = kept_groups(ctx.scope)
        kept = sample([r for g in groups.values() for r in g], cfg.kept_sample, f"chip:{ctx.seed}")
        closest = next(iter(groups.values()), kept)  # siblings of the nearest ancestor come first
        closest = sample(closest, cfg.kept_sample, f"chip:{ctx.seed}")
        phases = (("forget", forget), ("kept", kept), ("siblings", closest))
        acts = {}
        for step, (phase, records) in enumerate(phases):
            if should_cancel is not None and should_cancel():
                raise UnlearnCancelled(step)
            acts[phase] = example_activations(model, ctx.processor, ctx.root, records, modules,
                                              cfg.alpha_vision, cfg.batch_size)
            self.log.append(StepLog(step=step + 1, total_steps=len(phases) + 1, loss=0.0, lr=0.0))
            if progress is not None:
                progress(self.log[-1])
        bases = {name: projection_basis(acts["forget"][name], acts["kept"][name], acts["siblings"][name],
                                        cfg.top_k, cfg.tau) for name in modules}
        self.bases = bases
        self.log.append(StepLog(step=len(phases) + 1, total_steps=len(phases) + 1, loss=0.0, lr=0.0,
                                terms={f"rank:{name}": float(q.shape[1]) for name, q in bases.items()}))
        if progress is not None:
            progress(self.log[-1])
        return projection_adapter(model, bases)
