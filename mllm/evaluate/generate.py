"""Model answers for encoded records: batched greedy decoding, and the teacher-forced proxy.

Greedy decoding uses left-padded prompts (so every row continues from its last real token),
``do_sample=False``, the tokenizer's ``pad_token_id`` and at most ``max_new_tokens`` new tokens; it
stops at the model family's end-of-turn token (or EOS), where the answer is cut.

The **teacher-forced proxy** runs one forward pass over prompt + reference answer and takes the
argmax at every answer position (logits at those positions only), cut at the first end of turn.
If every argmax equals the reference token, greedy decoding produces exactly the reference;
otherwise the proxy string is not what greedy would say after its first mistake. It is therefore
exact for token-level exact match and ~100x cheaper, which makes it the metric for sweeps; reported
results use greedy decoding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from mllm.models.families import family_of
from mllm.models.runtime import input_device
from mllm.train.encode import EncodedRecords
from mllm.train.logprobs import answer_position_logits, per_example

BatchProgress = Callable[[int, int], None]  # (records answered so far, total records)


def _decode(processor: Any, ids: list[int]) -> str:
    """The answer text: ids up to the first end-of-turn / EOS token, special tokens dropped."""
    stops = set(family_of(processor).stop_ids(processor.tokenizer))
    end = next((i for i, token in enumerate(ids) if token in stops), len(ids))
    return processor.tokenizer.decode(ids[:end], skip_special_tokens=True)


@torch.no_grad()
def greedy_answers(model: Any, processor: Any, data: EncodedRecords, *, batch_size: int = 32,
                   max_new_tokens: int = 128, progress: BatchProgress | None = None) -> list[str]:
    """Greedy answers for every example of ``data``, in order; ``progress`` is called after each batch."""
    model.eval()
    stops = family_of(processor).stop_ids(processor.tokenizer)
    answers: list[str] = []
    for start in range(0, len(data), batch_size):
        batch = data.batch(range(start, min(start + batch_size, len(data))), with_answer=False)
        batch = batch.to(input_device(model))
        output = model.generate(**batch.model_inputs(), do_sample=False, max_new_tokens=max_new_tokens,
                                pad_token_id=processor.tokenizer.pad_token_id, eos_token_id=stops)
        new_tokens = output[:, batch.input_ids.shape[1]:].cpu()
        answers.extend(_decode(processor, row.tolist()) for row in new_tokens)
        if progress is not None:
            progress(len(answers), len(data))
    return answers


@torch.no_grad()
def teacher_forced_answers(model: Any, processor: Any, data: EncodedRecords, *, batch_size: int = 32,
                           progress: BatchProgress | None = None) -> list[str]:
    """Argmax answers under teacher forcing (see the module docstring), in order."""
    model.eval()
    answers: list[str] = []
    for start in range(0, len(data), batch_size):
        batch = data.batch(range(start, min(start + batch_size, len(data))))
        logits, _ = answer_position_logits(model, batch)
        predicted, mask = per_example(logits.argmax(dim=-1), batch)
        for row, keep in zip(predicted.cpu(), mask.cpu(), strict=True):
            answers.append(_decode(processor, row[keep].tolist()))
        if progress is not None:
            progress(len(answers), len(data))
    return answers
