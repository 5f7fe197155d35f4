from __future__ import annotations

from mllm.data.schema import Split
from mllm.evaluate.generate import greedy_answers, teacher_forced_answers
from mllm.evaluate.report import evaluate_groups, evaluation_json, markdown_table, summarise
from mllm.train.encode import encode_records


def test_greedy_batched_left_padding_equals_one_at_a_time(trained):
    records = trained.corpus.records
    data = encode_records(trained.processor, records, trained.corpus.root)
    batched = greedy_answers(trained.model, trained.processor, data, batch_size=len(records),
                             max_new_tokens=48)
    calls = []
    single = greedy_answers(trained.model, trained.processor, data, batch_size=1, max_new_tokens=48,
                            progress=lambda done, total: calls.append((done, total)))
    assert batched == single
    assert calls == [(n, len(records)) for n in range(1, len(records) + 1)]
    trainable = [i for i, r in enumerate(records) if r.is_trainable]
    assert sum(batched[i] == records[i].answer for i in trainable) >= 0.9 * len(trainable)


def test_teacher_forced_proxy_agrees_with_greedy_on_exact_answers(trained):
    records = trained.corpus.records
    data = encode_records(trained.processor, records, trained.corpus.root)
    forced = teacher_forced_answers(trained.model, trained.processor, data, batch_size=5)
    greedy = greedy_answers(trained.model, trained.processor, data, max_new_tokens=48)
    for record, f, g in zip(records, forced, greedy, strict=True):
        if f == record.answer:  # every argmax right under teacher forcing => greedy says the same
            assert g == record.answer


def test_max_new_tokens_bounds_the_answer(trained):
    data = encode_records(trained.processor, trained.corpus.records[:2], trained.corpus.root)
    for answer in greedy_answers(trained.model, trained.processor, data, max_new_tokens=1):
        assert len(trained.processor.tokenizer(answer, add_special_tokens=False).input_ids) <= 1


def test_group_tables(trained):
    corpus = trained.corpus
    groups = {"forget": corpus.select(trainable=True)[:3], "retain": corpus.select(trainable=True)[3:],
              "holdout": corpus.select(split=Split.HOLDOUT)}
    scored = evaluate_groups(trained.model, trained.processor, corpus.root, groups, max_new_tokens=16)
    assert [s.group for s in scored] == [name for name, records in groups.items() for _ in records]
    rows = summarise(scored)
    assert {tuple(r.keys) for r in rows} == {("group", "task", "level")}
    assert sum(r.n for r in rows) == len(scored)
    by_kind = {(r.keys["group"], r.keys["fact_kind"]): r for r in summarise(scored, ("group", "fact_kind"))}
    assert by_kind[("retain", "private")].exact_match >= 0.9
    holdout_images = [r for r in groups["holdout"] if r.fact_kind.value == "image_grounded"]
    assert by_kind[("holdout", "image_grounded")].n == len(holdout_images) > 0
    header = "| group | task | level | n | exact match | ROUGE-L F1 | MedForget |"
    assert markdown_table(rows).startswith(header)
    document = evaluation_json(scored, mode="greedy")
    assert document["table"][0].keys() >= {"group", "task", "level", "n", "exact_match", "rouge_l_f1"}
    assert len(document["answers"]) == len(scored)
