"""Sizes of the reference model (no torch import, so the CLI can list them cheaply)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReferenceSpec:
    """Sizes of the reference model. ``seed`` fixes the initial weights."""

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

    @property
    def image_seq_length(self) -> int:
        return (self.image_size // self.patch_size) ** 2


# Named sizes: ``tiny`` memorises a few dozen records in seconds (tests), ``small`` is the default.
SPECS: dict[str, ReferenceSpec] = {
    "tiny": ReferenceSpec(image_size=32, vision_hidden=32, vision_layers=1, vision_heads=2,
                          text_hidden=128, text_layers=2, text_heads=4, vocab_size=512,
                          max_positions=256),
    "small": ReferenceSpec(),
}
