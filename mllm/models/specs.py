"""Sizes of the reference models (no torch import, so the CLI can list them cheaply)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReferenceSpec:
    """Sizes of a reference model. ``seed`` fixes the initial weights; ``family`` picks the architecture
    (``llava``: CLIP + projector + Llama; ``qwen2-vl``: Qwen2-VL vision transformer + Qwen2 with M-RoPE)."""

    image_size: int = 64
    patch_size: int = 16
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    text_hidden: int = 256
    text_layers: int = 4
    text_heads: int = 4
    vocab_size: int = 2048
    max_positions: int = 512
    initializer_range: float = 0.06
    seed: int = 0
    family: str = "llava"

    @property
    def image_seq_length(self) -> int:
        """Image tokens per prompt (Qwen2-VL merges 2x2 patches into one token)."""
        patches = (self.image_size // self.patch_size) ** 2
        return patches // 4 if self.family == "qwen2-vl" else patches


_TINY = dict(image_size=32, vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=128, text_layers=2,
             text_heads=4, vocab_size=512, max_positions=256)

# Named sizes: ``tiny`` memorises a few dozen records in seconds (tests), ``small`` is the default;
# ``tiny-qwen2-vl`` is the same size as ``tiny`` in the Qwen2-VL architecture (4 image tokens each).
SPECS: dict[str, ReferenceSpec] = {
    "tiny": ReferenceSpec(**_TINY),
    "tiny-qwen2-vl": ReferenceSpec(**_TINY, patch_size=8, family="qwen2-vl"),
    "small": ReferenceSpec(),
}
