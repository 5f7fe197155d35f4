"""What the verifier reads off a model's weights: its own greedy decoding and fp32 answer statistics.

The verifier never trusts a model's ``generate``: a wrapper can filter or refuse there while the
weights still hold the fact. :func:`greedy_decode` calls only the forward pass: left-padded prompts
(padding masked out; with rotary position embeddings a row's uniform position shift changes no
attention score) are run once with the key/value cache, then one token per step is fed back, taking
the argmax, until every row has emitted end-of-sequence or spent its step budget. A row still open
then is reported as unfinished (endless output).
:func:`reproduces` (one teacher-forced pass) spares the decoding of answers that are reproduced exactly.

:func:`answer_stats` runs one teacher-forced forward over prompt + answer and keeps, in fp32, at the
answer positions only (the closing end-of-sequence excluded) the log-probability of each answer
token and the mean / standard deviation of the log-probability under the model's next-token
distribution (what Min-K%++ standardises with).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mllm.data.schema import Record
from mllm.train.encode import IGNORE_INDEX, EncodedRecords, Example, answer_ids, encode_records

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


def encode(processor: Any, records: Sequence[Record], root: Path, *, with_image: bool = True) -> EncodedRecords:
    """Encode records (their ``question`` is the prompt text); ``with_image=False`` drops the image."""
    if with_image:
        return encode_records(processor, records, root)
    examples = []
    for record in records:
        ids = processor.tokenizer(_text_only_prompt(processor, record.question),
                                  add_special_tokens=False).input_ids
        examples.append(Example(record_id=record.record_id, prompt_ids=tuple(ids),
                                answer_ids=answer_ids(processor, record.answer), image_key=""))
    return EncodedRecords(examples, {"": {}}, pad_token_id=processor.tokenizer.pad_token_id)


def encode_probes(processor: Any, probes: Sequence[Probe], root: Path) -> list[tuple[list[int], EncodedRecords]]:
    """Probes grouped by modality: ``[(indices into probes, encoded records)]``."""
    out = []
    for with_image in (True, False):
        indices = [i for i, p in enumerate(probes) if p.with_image is with_image]
        if indices:
            records = [probes[i].prompt_record() for i in indices]
            out.append((indices, encode(processor, records, root, with_image=with_image)))
    return out


def _image_inputs(data: EncodedRecords, indices: Sequence[int]) -> dict[str, torch.Tensor]:
    chosen = [data.examples[i] for i in indices]
    keys = data.images[chosen[0].image_key]
    return {key: torch.cat([data.images[ex.image_key][key] for ex in chosen]) for key in keys}


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def greedy_decode(model: Any, processor: Any, data: EncodedRecords, *, limits: Sequence[int],
                  batch_size: int = 32) -> list[Decoded]:
    """The verifier's own greedy decoding from the forward pass (see the module docstring).

    ``limits`` gives each example's step budget; a row that reaches it without end-of-sequence is
    closed as unfinished, so an answer never depends on which other rows share its batch.
    """
    model.eval()
    device = _device(model)
    eos = processor.tokenizer.eos_token_id
    results: list[Decoded] = []
    for start in range(0, len(data), batch_size):
        indices = list(range(start, min(start + batch_size, len(data))))
        batch = data.batch(indices, with_answer=False)  # left-padded prompts
        attention = batch.attention_mask.to(device)
        output = model(**{k: v.to(device) for k, v in batch.model_inputs().items()}, use_cache=True,
                       logits_to_keep=1)
        budget = [limits[i] for i in indices]
        new: list[list[int]] = [[] for _ in indices]
        open_rows = {i for i in range(len(indices)) if budget[i] > 0}
        endless: set[int] = set()
        while open_rows:
            chosen = output.logits[:, -1].argmax(dim=-1)
            for i in sorted(open_rows):
                token = int(chosen[i])
                if token == eos:
                    open_rows.discard(i)
                    continue
                new[i].append(token)
                if len(new[i]) >= budget[i]:
                    open_rows.discard(i)
                    endless.add(i)
            if not open_rows:
                break
            attention = torch.cat([attention, attention.new_ones((len(indices), 1))], dim=1)
            output = model(input_ids=chosen.unsqueeze(-1), attention_mask=attention, cache=output.cache,
                           use_cache=True)
        for i, tokens in enumerate(new):
            results.append(Decoded(text=processor.tokenizer.decode(tokens, skip_special_tokens=True),
                                   finished=i not in endless, tokens=len(tokens)))
    return results


@torch.no_grad()
def reproduces(model: Any, data: EncodedRecords, *, batch_size: int = 32) -> list[bool]:
    """Whether the teacher-forced argmax equals every answer token and the closing EOS.

    When it does, greedy decoding provably outputs exactly the reference answer and stops, so
    :func:`greedy_decode` is needed only for the other examples.
    """
    model.eval()
    device = _device(model)
    out: list[bool] = []
    for start in range(0, len(data), batch_size):
        batch = data.batch(range(start, min(start + batch_size, len(data))))
        logits = model(**{k: v.to(device) for k, v in batch.model_inputs().items()}).logits[:, :-1]
        targets = batch.labels[:, 1:].to(logits.device)
        hit = (logits.argmax(dim=-1) == targets) | (targets == IGNORE_INDEX)
        out.extend(hit.all(dim=1).tolist())
    return out


@torch.no_grad()
def answer_stats(model: Any, data: EncodedRecords, *, batch_size: int = 32) -> list[AnswerStats]:
    """fp32 answer-token log-probs and next-token log-prob mean / std (see the module docstring)."""
    model.eval()
    device = _device(model)
    out: list[AnswerStats] = []
    for start in range(0, len(data), batch_size):
        batch = data.batch(range(start, min(start + batch_size, len(data))))
        inputs = {k: v.to(device) for k, v in batch.model_inputs().items()}
        logits = model(**inputs).logits[:, :-1]
        targets = batch.labels[:, 1:].to(logits.device)
        for row in range(logits.shape[0]):
            positions = (targets[row] != IGNORE_INDEX).nonzero().squeeze(-1)[:-1]  # drop closing EOS
            logp = torch.log_softmax(logits[row, positions].float(), dim=-1)
            token = logp.gather(-1, targets[row, positions].unsqueeze(-1)).squeeze(-1)
            prob = logp.exp()
            mu = (prob * logp).sum(-1)
            sigma = ((prob * logp.square()).sum(-1) - mu.square()).clamp(min=0).sqrt()
            out.append(AnswerStats(token.cpu().numpy(), mu.cpu().numpy(), sigma.cpu().numpy()))
    return out
