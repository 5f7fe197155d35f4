"""Plumbing real checkpoints need: gradient checkpointing with LoRA, gradient accumulation, bf16."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch

from mllm.evaluate.generate import greedy_answers
from mllm.models.artifact import ArtifactMetadata, save_artifact
from mllm.models.loader import load_model
from mllm.models.lora import LoraSettings, add_lora
from mllm.models.specs import SPECS
from mllm.train.encode import encode_records
from mllm.train.logprobs import answer_logprobs
from mllm.train.loop import ShuffledBatches, TrainConfig, Trainer
from mllm.train.recipe import fresh_reference, train_on_records

LORA = LoraSettings(rank=4, alpha=8)


def _adapters(model):
    return {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" in name}


@pytest.mark.parametrize("size", ["tiny", "tiny-qwen2-vl"])
def test_gradient_checkpointing_still_trains_lora(corpus, size):
    records = corpus.select(trainable=True)
    runs = {}
    for checkpointing in (False, True):
        model, processor = fresh_reference(SPECS[size])
        config = TrainConfig(steps=3, batch_size=4, lr=3e-3, gradient_checkpointing=checkpointing)
        peft_model, result = train_on_records(model, processor, corpus.root, records, config, lora=LORA)
        runs[checkpointing] = (peft_model, result)
    peft_model, result = runs[True]
    assert peft_model.get_base_model().is_activation_checkpointing
    lora_b = [p for name, p in _adapters(peft_model).items() if "lora_B" in name]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # B starts at 0
    assert result.losses == pytest.approx(runs[False][1].losses, rel=1e-4)  # same training, less memory
    for name, p in _adapters(peft_model).items():
        assert torch.allclose(p, _adapters(runs[False][0])[name], atol=1e-5), name


def test_checkpointing_without_input_grads_cannot_train_lora(corpus):
    """The failure enable_gradient_checkpointing() prevents: no gradient reaches the adapters."""
    model, processor = fresh_reference(SPECS["tiny"])
    peft_model = add_lora(model, LORA)
    peft_model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    peft_model.disable_input_require_grads()
    data = encode_records(processor, corpus.select(trainable=True), corpus.root)
    config = TrainConfig(steps=2, batch_size=4, lr=3e-3)
    with pytest.raises(RuntimeError, match="does not require grad"):
        Trainer(peft_model, config, ShuffledBatches(data, config.batch_size, config.seed)).fit()


def test_gradient_accumulation_equals_the_larger_batch(corpus):
    """2 micro-batches of 2 = 1 batch of 4 (answers of equal length, so the mean of means is the mean)."""
    model, processor = fresh_reference(SPECS["tiny"])
    data = encode_records(processor, corpus.select(trainable=True), corpus.root)
    by_length = defaultdict(list)
    for i, example in enumerate(data.examples):
        by_length[len(example.answer_ids)].append(i)
    chosen = next(indices[:4] for indices in by_length.values() if len(indices) >= 4)
    data.examples = [data.examples[i] for i in chosen]
    runs = []
    for batch_size, accum in ((4, 1), (2, 2)):
        fresh, _ = fresh_reference(SPECS["tiny"])
        config = TrainConfig(steps=1, batch_size=batch_size, grad_accum=accum, lr=1e-3, warmup_ratio=0.0)
        trainer = Trainer(fresh, config, ShuffledBatches(data, batch_size, seed=0, group_by_length=False))
        norms = []
        trainer.fit(callback=lambda progress, norms=norms: norms.append(progress.grad_norm))
        runs.append((trainer, norms))
    (big, big_norms), (accumulated, accumulated_norms) = runs
    assert accumulated.steps_per_epoch == big.steps_per_epoch == 1
    assert accumulated_norms == pytest.approx(big_norms, rel=1e-4)  # the scale, not just the direction
    compared = 0
    for (name, a), (_, b) in zip(big.named_params, accumulated.named_params, strict=True):
        if a.grad is None:  # a parameter the loss does not depend on (e.g. CLIP's unused last norm)
            assert b.grad is None, name
            continue
        assert torch.allclose(a.grad, b.grad, rtol=1e-3, atol=1e-7), name  # the step's (clipped) gradient
        compared += 1
    assert compared > len(big.named_params) / 2


@pytest.mark.parametrize("size, dtype", [("tiny", "bf16"), ("tiny-qwen2-vl", "bf16"),
                                         ("tiny-qwen2-vl", "fp16")])
def test_half_precision_weights_are_scored_in_fp32_and_train_fp32_adapters(tmp_path, corpus, size, dtype):
    model, processor = fresh_reference(SPECS[size])
    save_artifact(model, processor, tmp_path / "m", ArtifactMetadata(kind="reference"))
    records = corpus.select(trainable=True)
    data = encode_records(processor, records[:4], corpus.root)
    full = load_model(tmp_path / "m")
    half = load_model(tmp_path / "m", dtype=dtype, device_map={"": "cpu"})
    weights = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    assert {p.dtype for p in half.model.parameters()} == {weights}
    with torch.no_grad():
        exact, mask = answer_logprobs(full.model, data.batch(range(4)))
        approx, _ = answer_logprobs(half.model, data.batch(range(4)))
    assert approx.dtype == torch.float32
    assert torch.allclose(approx[mask], exact[mask], atol=0.25)
    assert len(greedy_answers(half.model, half.processor, data, max_new_tokens=3)) == 4

    base = {name: p.detach().clone() for name, p in half.model.named_parameters()}
    config = TrainConfig(steps=3, batch_size=4, lr=3e-3)
    peft_model, result = train_on_records(half.model, half.processor, corpus.root, records, config, lora=LORA)
    adapters = _adapters(peft_model)
    assert adapters and {p.dtype for p in adapters.values()} == {torch.float32}
    assert all(torch.isfinite(torch.tensor(result.losses)))
    for name, param in peft_model.named_parameters():
        if "lora_" not in name:
            original = name.replace("base_model.model.", "", 1).replace(".base_layer", "")
            assert param.dtype == weights and torch.equal(param, base[original]), name


def test_autocast_computes_in_bf16_and_keeps_fp32_weights(corpus):
    """Mixed precision: the forward runs in bf16 (losses differ from fp32's, yet close), weights and
    optimizer state stay fp32, and a run with it still learns (the probe loss falls)."""
    records = corpus.select(trainable=True)
    runs = {}
    for autocast in (None, "bfloat16"):
        model, processor = fresh_reference(SPECS["tiny"])
        config = TrainConfig(steps=6, batch_size=4, lr=3e-3, autocast=autocast)
        runs[autocast] = train_on_records(model, processor, corpus.root, records, config)
    model, result = runs["bfloat16"]
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert result.probe_loss_after < result.probe_loss_before
    exact = runs[None][1].losses
    assert result.losses[0] != exact[0] and result.losses[0] == pytest.approx(exact[0], rel=0.05)


@pytest.mark.parametrize("dtype, message", [("float32", "bfloat16 only"), ("float16", "loss scaling"),
                                            ("int8", "unknown dtype")])
def test_autocast_refuses_a_dtype_it_cannot_compute_in(corpus, dtype, message):
    model, processor = fresh_reference(SPECS["tiny"])
    source = ShuffledBatches(encode_records(processor, corpus.select(trainable=True), corpus.root), 4, 0)
    with pytest.raises(ValueError, match=message):
        Trainer(model, TrainConfig(autocast=dtype), source)


def test_cpu_threads_holds_the_count_inside_the_block_and_restores_it():
    from mllm.models.runtime import cpu_threads

    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with pytest.raises(RuntimeError), cpu_threads(other):
        assert torch.get_num_threads() == other
        raise RuntimeError("restored even when the block fails")
    assert torch.get_num_threads() == before
