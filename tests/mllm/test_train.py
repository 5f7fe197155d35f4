from __future__ import annotations

import dataclasses

import pytest
import torch

from mllm.evaluate.generate import teacher_forced_answers
from mllm.models.lora import LoraSettings
from mllm.models.specs import SPECS
from mllm.train.checkpoint import CheckpointMismatchError, checkpoint_path
from mllm.train.encode import IGNORE_INDEX, encode_records, prompt_text
from mllm.train.logprobs import answer_logprobs, answer_nll, sequence_logprobs
from mllm.train.loop import NoOpTrainingError, ShuffledBatches, TrainConfig, Trainer
from mllm.train.recipe import TrainJobError, fresh_reference, train_on_records, training_records


@pytest.fixture(scope="module")
def fresh(corpus):
    return fresh_reference(SPECS["tiny"])


def test_labels_cover_exactly_the_answer_and_eos(fresh, corpus):
    _, processor = fresh
    records = corpus.select(trainable=True)[:3]
    data = encode_records(processor, records, corpus.root)
    batch = data.batch(range(3))
    tokenizer = processor.tokenizer
    for row, (record, example) in enumerate(zip(records, data.examples, strict=True)):
        labelled = batch.labels[row][batch.labels[row] != IGNORE_INDEX].tolist()
        assert labelled[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(labelled[:-1]) == record.answer
        start = len(example.prompt_ids)
        assert batch.input_ids[row, start:start + len(labelled)].tolist() == labelled
        assert (batch.labels[row, :start] == IGNORE_INDEX).all()
        assert example.prompt_ids.count(tokenizer.image_token_id) == SPECS["tiny"].image_seq_length
        assert tokenizer.decode(example.prompt_ids).endswith(prompt_text(processor, record.question)[-20:])
    lengths = batch.attention_mask.sum(dim=1)
    assert all(batch.attention_mask[i, :n].all() for i, n in enumerate(lengths))  # right padding
    prompts = data.batch(range(3), with_answer=False)
    assert prompts.labels is None
    assert prompts.attention_mask[:, -1].all()  # left padding: every prompt ends at the last column


def test_loss_is_transformers_causal_lm_loss_on_answer_tokens(fresh, corpus):
    model, processor = fresh
    data = encode_records(processor, corpus.select(trainable=True)[:4], corpus.root)
    batch = data.batch(range(4))
    with torch.no_grad():
        reference = model(**batch.model_inputs(), labels=batch.labels).loss
        ours = answer_nll(model, batch)
        logp, mask = answer_logprobs(model, batch)
        assert torch.allclose(ours, reference, atol=1e-5)
        assert logp.dtype == torch.float32 and (logp[~mask] == 0).all() and (logp[mask] < 0).all()
        assert mask.sum(dim=1).tolist() == [len(ex.answer_ids) for ex in data.examples]
        assert torch.allclose(sequence_logprobs(model, batch), logp.sum(dim=1))


def test_memorises_a_tiny_corpus_in_seconds(trained):
    records = trained.corpus.select(trainable=True)
    answers = teacher_forced_answers(trained.model, trained.processor,
                                     encode_records(trained.processor, records, trained.corpus.root))
    exact = sum(a == r.answer for a, r in zip(answers, records, strict=True)) / len(records)
    assert exact >= 0.9
    result = trained.result
    assert result.probe_loss_after < 0.1 * result.probe_loss_before
    assert sum(result.losses[-5:]) / 5 < 0.1 * result.losses[0]


def _trainer(corpus, config):
    model, processor = fresh_reference(SPECS["tiny"])
    data = encode_records(processor, corpus.select(trainable=True), corpus.root)
    return Trainer(model, config, ShuffledBatches(data, config.batch_size, config.seed))


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path, corpus, grad_accum):
    """Bitwise: same weights, optimizer state, schedule, data order and RNG (CPU, same thread count)."""
    config = TrainConfig(steps=10, batch_size=4, lr=3e-3, seed=1, grad_accum=grad_accum)
    straight = _trainer(corpus, config)
    straight.fit()

    def stop_at_7(progress):
        if progress.step == 7:
            raise _Interrupt

    interrupted = _trainer(corpus, config)
    with pytest.raises(_Interrupt):
        interrupted.fit(callback=stop_at_7, checkpoint_dir=tmp_path, checkpoint_every=3)
    assert checkpoint_path(tmp_path).is_file()  # written at step 6
    resumed = _trainer(corpus, config)
    steps = []
    result = resumed.fit(callback=lambda p: steps.append(p.step), checkpoint_dir=tmp_path, resume=True)
    assert steps == [7, 8, 9, 10]
    assert result.steps == 10 and len(result.losses) == 10
    for (name, a), (_, b) in zip(straight.named_params, resumed.named_params, strict=True):
        assert torch.equal(a, b), name

    with pytest.raises(CheckpointMismatchError, match="another recipe"):
        _trainer(corpus, dataclasses.replace(config, lr=1e-3)).fit(checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(FileNotFoundError):
        _trainer(corpus, config).fit(checkpoint_dir=tmp_path / "empty", resume=True)


def test_a_run_that_changes_nothing_raises(corpus):
    with pytest.raises(NoOpTrainingError, match="every trainable parameter unchanged"):
        _trainer(corpus, TrainConfig(steps=2, lr=0.0, batch_size=4)).fit()
    with pytest.raises(NoOpTrainingError, match="left the probe loss at"):
        _trainer(corpus, TrainConfig(steps=2, lr=1e-30, batch_size=4)).fit()
    trainer = _trainer(corpus, TrainConfig(steps=1))
    trainer.model.requires_grad_(False)
    with pytest.raises(NoOpTrainingError, match="no trainable parameters"):
        Trainer(trainer.model, trainer.config, trainer.source)


def test_lora_training_changes_only_adapters(corpus):
    model, processor = fresh_reference(SPECS["tiny"])
    base = {name: p.detach().clone() for name, p in model.named_parameters()}
    config = TrainConfig(steps=4, batch_size=4, lr=3e-3)
    peft_model, result = train_on_records(model, processor, corpus.root, corpus.select(trainable=True),
                                          config, lora=LoraSettings(rank=4, alpha=8))
    assert result.probe_loss_after != result.probe_loss_before
    for name, param in peft_model.named_parameters():
        if "lora_" not in name:
            original = name.replace("base_model.model.", "", 1).replace(".base_layer", "")
            assert torch.equal(param, base[original]), name


def test_training_records_exclude_the_forget_set(corpus):
    trainable = corpus.select(trainable=True)
    forget = {trainable[0].record_id, trainable[1].record_id}
    retain = training_records(corpus, forget)
    assert len(retain) == len(trainable) - 2 and not forget & {r.record_id for r in retain}
    with pytest.raises(TrainJobError, match="not trainable records"):
        training_records(corpus, {"no-such-record"})
    holdout_id = corpus.select(trainable=False)[0].record_id
    with pytest.raises(TrainJobError):
        training_records(corpus, {holdout_id})
