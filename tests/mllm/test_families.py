"""Model families through one code path: end-of-turn tokens, Qwen2-VL processor outputs in batches,
padding, and logits computed only at answer positions."""

from __future__ import annotations

import re

import pytest
import torch
from tokenizers import normalizers

from mllm.evaluate.generate import greedy_answers
from mllm.models.families import QWEN2_VL, family_of, processor_digest
from mllm.models.loader import load_model
from mllm.models.lora import LoraSettings, add_lora
from mllm.models.specs import SPECS
from mllm.train.encode import encode_records, prompt_text
from mllm.train.logprobs import answer_logprobs, answer_mask, answer_position_logits
from mllm.train.recipe import fresh_reference

SIZES = ["tiny", "tiny-qwen2-vl"]


@pytest.fixture(scope="module", params=SIZES)
def reference(request, corpus):
    return fresh_reference(SPECS[request.param])


def _varied_prompts(records):
    """Prompts of clearly different lengths, so batches need padding."""
    return [record.question + " Please answer." * (i % 3) for i, record in enumerate(records)]


def test_processor_digest_survives_a_reload_and_sees_every_change(reference, tmp_path):
    model, processor = reference
    processor.save_pretrained(tmp_path)
    family = family_of(processor)
    digest = processor_digest(processor)
    assert processor_digest(family.load_processor(tmp_path)) == digest
    spec = {"llava": "tiny", "qwen2-vl": "tiny-qwen2-vl"}[family.name]
    assert processor_digest(fresh_reference(SPECS[spec])[1]) == digest  # an oracle's fresh build
    # a normalizer that rewrites text before tokenising (could hide an answer), an added token, a
    # changed image normalisation: each is another processor
    changed = family.load_processor(tmp_path)
    changed.tokenizer.backend_tokenizer.normalizer = normalizers.Replace("a", "b")
    assert processor_digest(changed) != digest
    changed = family.load_processor(tmp_path)
    changed.tokenizer.add_tokens(["<hidden>"])
    assert processor_digest(changed) != digest
    changed = family.load_processor(tmp_path)
    changed.image_processor.image_mean = [0.0, 0.0, 0.0]
    assert processor_digest(changed) != digest


def test_answers_round_trip_with_the_family_end_of_turn(reference, corpus):
    model, processor = reference
    tokenizer = processor.tokenizer
    family = family_of(processor)
    assert family.name == {"llava": "llava", "qwen2_vl": "qwen2-vl"}[model.config.model_type]
    end_of_turn = tokenizer.convert_tokens_to_ids({"llava": "</s>", "qwen2-vl": "<|im_end|>"}[family.name])
    records = corpus.select(trainable=True)[:6]
    data = encode_records(processor, records, corpus.root)
    image = re.escape(tokenizer.image_token)
    for record, example in zip(records, data.examples, strict=True):
        assert example.answer_ids[-1] == end_of_turn
        assert tokenizer.decode(example.answer_ids[:-1]) == record.answer
        # prompt and answer tokenised separately = the whole conversation rendered by the chat template
        decoded = re.sub(f"(?:{image})+", tokenizer.image_token,
                         tokenizer.decode(example.prompt_ids + example.answer_ids))
        user = [{"type": "image"}, {"type": "text", "text": record.question}]
        conversation = [{"role": "user", "content": user},
                        {"role": "assistant", "content": [{"type": "text", "text": record.answer}]}]
        rendered = processor.apply_chat_template(conversation, tokenize=False)
        assert rendered.startswith(decoded) and rendered[len(decoded):] in ("", "\n")


def test_qwen_answers_end_with_im_end_even_when_eos_differs(corpus):
    """Base Qwen2-VL tokenizers have EOS <|endoftext|>; an assistant turn still ends with <|im_end|>."""
    _, processor = fresh_reference(SPECS["tiny-qwen2-vl"])
    processor.tokenizer.eos_token = "<|endoftext|>"
    im_end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert processor.tokenizer.eos_token_id != im_end
    example = encode_records(processor, corpus.select(trainable=True)[:1], corpus.root).examples[0]
    assert example.answer_ids[-1] == im_end
    assert QWEN2_VL.stop_ids(processor.tokenizer) == [im_end, processor.tokenizer.eos_token_id]


def test_qwen_batches_concatenate_patches_and_pad_token_types(corpus):
    _, processor = fresh_reference(SPECS["tiny-qwen2-vl"])
    records = corpus.select(trainable=True)[:4]
    data = encode_records(processor, records, corpus.root, prompts=_varied_prompts(records))
    image_id = processor.tokenizer.image_token_id
    for with_answer in (True, False):  # right padding for training, left padding for generation
        batch = data.batch(range(4), with_answer=with_answer)
        grid = batch.image_inputs["image_grid_thw"]
        assert grid.tolist() == [[1, 4, 4]] * 4  # one row per image, in batch order
        assert batch.image_inputs["pixel_values"].shape[0] == int(grid.prod(dim=1).sum())  # patch rows
        types = batch.token_inputs["mm_token_type_ids"]
        assert types.shape == batch.input_ids.shape
        assert torch.equal(types == 1, batch.input_ids == image_id)  # aligned under padding
        assert (types[batch.attention_mask == 0] == 0).all()
        image_tokens = SPECS["tiny-qwen2-vl"].image_seq_length
        assert (batch.input_ids == image_id).sum(dim=1).tolist() == [image_tokens] * 4
        assert "mm_token_type_ids" in batch.model_inputs()


def test_padded_batches_score_like_single_examples(reference, corpus):
    """Right-padded scoring and left-padded generation (M-RoPE positions included) ignore the padding."""
    model, processor = reference
    records = corpus.select(trainable=True)[:4]
    data = encode_records(processor, records, corpus.root, prompts=_varied_prompts(records))
    assert len({len(ex.prompt_ids) for ex in data.examples}) > 1
    with torch.no_grad():
        batched, mask = answer_logprobs(model, data.batch(range(4)))
        for i in range(4):
            single, single_mask = answer_logprobs(model, data.batch([i]))
            assert torch.allclose(batched[i][mask[i]], single[0][single_mask[0]], atol=1e-4)
    assert greedy_answers(model, processor, data, batch_size=4, max_new_tokens=4) == \
        greedy_answers(model, processor, data, batch_size=1, max_new_tokens=4)


def test_answer_position_logits_equal_full_logits(reference, corpus):
    model, processor = reference
    records = corpus.select(trainable=True)[:5]
    batch = encode_records(processor, records, corpus.root, prompts=_varied_prompts(records)).batch(range(5))
    head_outputs = []
    hook = model.get_output_embeddings().register_forward_hook(
        lambda module, args, output: head_outputs.append(tuple(output.shape)))
    with torch.no_grad():
        ours, targets = answer_position_logits(model, batch)
        hook.remove()
        full = model(**batch.model_inputs()).logits
    mask = answer_mask(batch)
    assert head_outputs == [tuple(ours.shape)]  # the LM head only ever saw the answer positions
    assert ours.dtype == torch.float32 and ours.shape == (int(mask.sum()), full.shape[-1])
    assert ours.shape[0] < full.shape[0] * full.shape[1] / 5  # a small fraction of all positions
    assert torch.allclose(ours, full[mask].float(), atol=1e-5)
    assert torch.equal(targets, batch.labels[:, 1:][mask[:, :-1]])


def test_prompts_replace_the_question(reference, corpus):
    _, processor = reference
    records = corpus.select(trainable=True)[:2]
    prompts = ["Institution context. " + records[0].question, "Only this."]
    data = encode_records(processor, records, corpus.root, prompts=prompts)
    decoded = processor.tokenizer.decode(data.examples[1].prompt_ids)
    assert decoded.endswith(prompt_text(processor, "Only this.").split("Only this.")[1])
    assert "Only this." in decoded and records[1].question not in decoded
    original = encode_records(processor, records, corpus.root)
    assert data.examples[1].answer_ids == original.examples[1].answer_ids
    with pytest.raises(ValueError, match="1 prompts for 2 records"):
        encode_records(processor, records, corpus.root, prompts=prompts[:1])


def test_qwen2_5_vl_checkpoint_loads_scores_and_adapts_only_the_language_model(tmp_path, corpus):
    """A Qwen2.5-VL directory (its vision MLP also has gate/up/down projections) is the qwen2-vl family."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    _, processor = fresh_reference(SPECS["tiny-qwen2-vl"])
    tokenizer = processor.tokenizer
    config = Qwen2_5_VLConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                         "mrope_section": [2, 3, 3]},
                     "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                       "out_hidden_size": 64, "patch_size": 8, "window_size": 16,
                       "fullatt_block_indexes": [1]},
        image_token_id=tokenizer.image_token_id, video_token_id=tokenizer.video_token_id,
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"))
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(tmp_path / "qwen25")
    processor.save_pretrained(tmp_path / "qwen25")
    loaded = load_model(tmp_path / "qwen25")
    assert loaded.family is QWEN2_VL and type(loaded.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    records = corpus.select(trainable=True)[:3]
    data = encode_records(loaded.processor, records, corpus.root, prompts=_varied_prompts(records))
    batch = data.batch(range(3))
    with torch.no_grad():
        full = loaded.model(**batch.model_inputs()).logits
        ours, _ = answer_position_logits(loaded.model, batch)
    assert torch.allclose(ours, full[answer_mask(batch)], atol=1e-5)

    peft_model = add_lora(loaded.model, LoraSettings(rank=2, alpha=2))
    adapted = {n for n, _ in peft_model.named_parameters() if ".lora_A" in n}
    assert adapted and all(".language_model." in n for n in adapted)
    assert any(".visual." in n and n.endswith("gate_proj.weight") for n, _ in peft_model.named_parameters())
