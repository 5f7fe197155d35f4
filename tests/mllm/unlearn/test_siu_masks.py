"""SIU's Dual Masked KL on a hand-made example."""

from __future__ import annotations

import torch

from mllm.unlearn.losses import masked_kl
from mllm.unlearn.methods.siu import token_keep_mask, vocab_keep_mask


def test_token_mask_drops_exactly_the_changed_positions():
    ref_logits = torch.full((4, 6), -5.0)
    for position, token in enumerate([1, 2, 3, 4]):
        ref_logits[position, token] = 5.0  # the original would say 1 2 3 4
    targets = torch.tensor([1, 5, 3, 0])  # positions 1 and 3 were deliberately changed
    assert token_keep_mask(ref_logits, targets).tolist() == [True, False, True, False]


def test_vocab_mask_keeps_kl_from_pulling_forgotten_tokens_back():
    assert vocab_keep_mask(6, {2, 4}).tolist() == [1, 1, 0, 1, 0, 1]
    ref = torch.tensor([[0.0, 0.0, 3.0, 0.0, 0.0, 0.0]])  # the original favours forgotten token 2
    moved = ref.clone()
    moved[0, 2] = -3.0  # the unlearned model dropped token 2 ...
    plain = masked_kl(ref, moved, None)
    masked = masked_kl(ref, moved, vocab_keep_mask(6, {2}))
    assert plain > 1.0  # ... which plain KL would punish hard
    assert masked < 0  # with K_V the forgotten token's term is gone (the rest are only renormalised)
    assert masked_kl(ref, ref, None).abs() < 1e-6
    assert masked_kl(ref, ref, vocab_keep_mask(6, {2})).abs() < 1e-6
