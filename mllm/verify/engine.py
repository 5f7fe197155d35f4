"""What the verifier reads off a model's weights: its own greedy decoding and fp32 answer statistics.

The verifier never trusts a model's ``generate``: a wrapper can filter or refuse there while the
weights still hold the fact. :func:`greedy_decode` calls only the forward pass: left-padded prompts
(padding masked out; with rotary position embeddings a row's uniform position shift changes no
attention score) are run once with the key/value cache, then one token per step is fed back, taking
the argmax, until every row has emitted end-of-sequence or spent its step budget. A row still open
then is reported as unfinished (endless output).
:func:`reproduces` (one teacher-forced pass) spares the decoding of answers that are reproduced exactly.

:func:`answer_stats` runs one teacher-forced forward over prompt + answer and keeps, in fp32, at the
answer positions only (logits are computed there only; the closing end of turn excluded) the
log-probability of each answer token and the mean / standard deviation of the log-probability under
the model's next-token distribution (what Min-K%++ standardises with).

Broken weights (NaN or infinite values, e.g. an fp16 overflow during unlearning) give non-finite
logits. :func:`finite_logits` reads such a position as the uniform distribution — the model knows
nothing there — so the verifier still writes a report, which the collapse and utility checks fail,
instead of crashing on the first statistic.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mllm.data.schema import Record
from mllm.models.families import family_of
from mllm.models.runtime import input_device
from mllm.train.encode import Batch, EncodedRecords, Example, answer_ids, encode_records
from mllm.train.logprobs import answer_mask, answer_position_logits

from .probes import Probe

_TEXT_KEYS = ("input_ids", "attention_mask")


@dataclass(frozen=True)
class Decoded:
    text: str
    finished: bool  # emitted end-of-sequence within the step budget
    tokens: int


@dataclass(frozen=True)
class AnswerStats:
    logps: np.ndarray  # fp32 log p(answer token), closing EOS excluded
    mu: np.ndarray
    sigma: np.ndarray


def _text_only_prompt(processor: Any, question: str) -> str:
    messages = [{"role": "user", "content": [{"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def encode(
    processor: Any, records: Sequence[Record], root: Path, *, with_image: bool = True
) -> EncodedRecords:
    """Encode records (their ``question`` is the prompt text); ``with_image=False`` drops the image."""
    if with_image:
        return encode_records(processor, records, root)
    examples = []
    for record in records:
        ids = processor.tokenizer(
            _text_only_prompt(processor, record.question), add_special_tokens=False
        ).input_ids
        examples.append(
            Example(
                record_id=record.record_id,
                prompt_ids=tuple(ids),
                answer_ids=answer_ids(processor, record.answer),
                image_key="",
            )
        )
    return EncodedRecords(examples, {"": {}}, pad_token_id=processor.tokenizer.pad_token_id)


def encode_probes(
    processor: Any, probes: Sequence[Probe], root: Path
) -> list[tuple[list[int], EncodedRecords]]:
    """Probes grouped by modality: ``[(indices into probes, encoded records)]``."""
    out = []
    for with_image in (True, False):
        indices = [i for i, p in enumerate(probes) if p.with_image is with_image]
        if indices:
            records = [probes[i].prompt_record() for i in indices]
            out.append((indices, encode(processor, records, root, with_image=with_image)))
    return out


@torch.no_grad()
def greedy_decode(
    model: Any, processor: Any, data: EncodedRecords, *, limits: Sequence[int], batch_size: int = 32
) -> list[Decoded]:
    """The verifier's own greedy decoding from the forward pass (see the module docstring).

    ``limits`` gives each example's step budget; a row that reaches it without a stop token (the
    family's end of turn or EOS) is closed as unfinished, so an answer never depends on which other
    rows share its batch.
    """
    model.eval()
    device = input_device(model)
    stops = set(family_of(processor).stop_ids(processor.tokenizer))
    results: list[Decoded] = []
    for start in range(0, len(data), batch_size):
        indices = list(range(start, min(start + batch_size, len(data))))
        batch = data.batch(indices, with_answer=False).to(device)  # left-padded prompts
        attention = batch.attention_mask
        output = model(**batch.model_inputs(), use_cache=True, logits_to_keep=1)
        budget = [limits[i] for i in indices]
        new: list[list[int]] = [[] for _ in indices]
        open_rows = {i for i in range(len(indices)) if budget[i] > 0}
        endless: set[int] = set()
        while open_rows:
            chosen = finite_logits(output.logits[:, -1]).argmax(dim=-1)
            for i in sorted(open_rows):
                token = int(chosen[i])
                if token in stops:
                    open_rows.discard(i)
                    continue
                new[i].append(token)
                if len(new[i]) >= budget[i]:
                    open_rows.discard(i)
                    endless.add(i)
            if not open_rows:
                break
            attention = torch.cat([attention, attention.new_ones((len(indices), 1))], dim=1)
            output = model(
                input_ids=chosen.unsqueeze(-1).to(device),
                attention_mask=attention,
                cache=output.cache,
                use_cache=True,
            )
        for i, tokens in enumerate(new):
            results.append(
                Decoded(
                    text=processor.tokenizer.decode(tokens, skip_special_tokens=True),
                    finished=i not in endless,
                    tokens=len(tokens),
                )
            )
    return results


def finite_logits(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` with every position holding a non-finite value replaced by zeros (the uniform
    distribution; see the module docstring)."""
    broken = ~torch.isfinite(logits).all(dim=-1, keepdim=True)
    return logits.masked_fill(broken, 0.0) if bool(broken.any()) else logits


def _rows(data: EncodedRecords, batch_size: int) -> Iterator[tuple[Batch, list[int]]]:
    """Answer batches and, per row, its number of answer positions (end of turn included)."""
    for start in range(0, len(data), batch_size):
        batch = data.batch(range(start, min(start + batch_size, len(data))))
        yield batch, answer_mask(batch).sum(dim=1).tolist()


@torch.no_grad()
def reproduces(model: Any, data: EncodedRecords, *, batch_size: int = 32) -> list[bool]:
    """Whether the teacher-forced argmax equals every answer token and the closing end of turn.

    When it does, greedy decoding provably outputs exactly the reference answer and stops, so
    :func:`greedy_decode` is needed only for the other examples.
    """
    model.eval()
    out: list[bool] = []
    for batch, counts in _rows(data, batch_size):
        logits, targets = answer_position_logits(model, batch)
        hits = (finite_logits(logits).argmax(dim=-1) == targets).cpu()
        out.extend(bool(part.all()) for part in hits.split(counts))
    return out


@torch.no_grad()
def answer_stats(model: Any, data: EncodedRecords, *, batch_size: int = 32) -> list[AnswerStats]:
    """fp32 answer-token log-probs and next-token log-prob mean / std (see the module docstring)."""
    model.eval()
    out: list[AnswerStats] = []
    for batch, counts in _rows(data, batch_size):
        logits, targets = answer_position_logits(model, batch)
        logp = torch.log_softmax(finite_logits(logits), dim=-1)
        token = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        mu = (logp.exp() * logp).sum(-1)
        sigma = ((logp.exp() * logp.square()).sum(-1) - mu.square()).clamp(min=0).sqrt()
        for t, m, sd in zip(token.split(counts), mu.split(counts), sigma.split(counts), strict=True):
            out.append(AnswerStats(t[:-1].cpu().numpy(), m[:-1].cpu().numpy(), sd[:-1].cpu().numpy()))
    return out
