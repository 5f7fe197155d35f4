"""Clean oracles: the tokenizer never saw the forget set; the oracle check refuses mismatched runs."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from mllm.data.schema import Corpus, Task, load_corpus, write_corpus
from mllm.data.text import record_texts, vocabulary_texts
from mllm.models.artifact import ArtifactKind, ArtifactMetadata, read_metadata
from mllm.models.loader import load_model
from mllm.models.specs import SPECS
from mllm.models.tokenizer import train_tokenizer
from mllm.train.loop import TrainConfig
from mllm.train.oracle import OracleMismatch, check_oracle, check_oracle_dirs, excluded_digest
from mllm.train.recipe import TrainJob, run_train_job

SECRET = "Zyqwarth"  # occurs only in the forget records


@pytest.fixture(scope="module")
def secret_corpus(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> tuple[Corpus, list[str]]:
    """The test corpus with a forget-only string in every free-text answer of one study."""
    study = corpus.select(trainable=True)[0].study_id
    records, forget = [], []
    for record in corpus.records:
        if record.study_id == study and record.is_trainable:
            forget.append(record.record_id)
            if record.task is not Task.CLASSIFICATION:
                record = replace(record, answer=f"{SECRET} " * 8 + record.answer)
        records.append(record)
    root = tmp_path_factory.mktemp("secret") / "corpus"
    shutil.copytree(corpus.root / "images", root / "images")
    write_corpus(root, name="secret", seed=0, size="test", records=records)
    return load_corpus(root), forget


def _job(corpus: Corpus, out: Path, exclude: frozenset[str] = frozenset(), **config) -> TrainJob:
    recipe = TrainConfig(**{"steps": 2, "batch_size": 4, "seed": 0, **config})
    return TrainJob(corpus=corpus.root, out=out, config=recipe, spec=SPECS["tiny"], exclude=exclude,
                    checkpoint_every=0)


@pytest.fixture(scope="module")
def runs(secret_corpus, tmp_path_factory) -> dict[str, Path]:
    corpus, forget = secret_corpus
    root = tmp_path_factory.mktemp("runs")
    run_train_job(_job(corpus, root / "full"))
    run_train_job(_job(corpus, root / "oracle", frozenset(forget)))
    run_train_job(_job(corpus, root / "other-recipe", frozenset(forget), lr=1e-3))
    return {name: root / name for name in ("full", "oracle", "other-recipe")}


def test_the_oracle_tokenizer_never_saw_a_forget_only_string(secret_corpus, runs) -> None:
    corpus, forget = secret_corpus
    tokenizer = load_model(runs["oracle"]).processor.tokenizer
    assert not any("Zyq" in token or "warth" in token for token in tokenizer.get_vocab())
    assert len(tokenizer.tokenize(SECRET)) >= 4  # spelled out in small pieces, never learned as a word
    assert not any(SECRET in text for text in vocabulary_texts())
    # the same tokenizer as the full model's: a function of the reserved corpus, not of this corpus
    assert tokenizer.get_vocab() == load_model(runs["full"]).processor.tokenizer.get_vocab()
    # what the check guards against: a tokenizer trained on the corpus learns the forget-only word
    leaky = train_tokenizer(record_texts(corpus.select(trainable=True)), vocab_size=SPECS["tiny"].vocab_size)
    assert any("warth" in token for token in leaky.get_vocab())


def replay(metadata: ArtifactMetadata, version: int) -> ArtifactMetadata:
    """``metadata`` as if its run had replayed 60 teaching-file cases of ``version``."""
    return replace(metadata, training={**metadata.training, "replay": 60, "replay_version": version})


def test_oracle_check_accepts_the_matching_oracle_and_refuses_the_rest(secret_corpus, runs) -> None:
    _, forget = secret_corpus
    full, oracle = read_metadata(runs["full"]), read_metadata(runs["oracle"])
    assert oracle.kind == ArtifactKind.RETRAIN_ORACLE
    assert oracle.training["excluded_sha256"] == excluded_digest(forget)
    check_oracle(oracle, full, forget_ids=forget)
    check_oracle_dirs(runs["oracle"], runs["full"])
    cases = [
        (read_metadata(runs["other-recipe"]), full, forget, "training.config"),
        (oracle, replace(full, parent_digest="sha256:" + "0" * 64), forget, "parent_digest"),
        (oracle, replace(full, corpus_sha256="f" * 64), forget, "corpus_sha256"),
        (oracle, replace(full, reference_spec={**full.reference_spec, "seed": 1}), forget, "reference_spec"),
        (oracle, full, forget[:-1], "training.excluded_sha256"),
        (full, full, forget, "kind"),
        (oracle, oracle, forget, "original"),
        (replace(oracle, training={**oracle.training, "prompts": None}), full, forget, "training.prompts"),
        (oracle, replay(full, 3), forget, "training.replay"),
        (replay(oracle, 2), replay(full, 3), forget, "training.replay"),
    ]
    for candidate, original, ids, field in cases:
        with pytest.raises(OracleMismatch) as caught:
            check_oracle(candidate, original, forget_ids=ids)
        assert caught.value.field == field


def test_a_recipe_written_before_a_setting_existed_compares_as_its_default(secret_corpus, runs) -> None:
    _, forget = secret_corpus
    full, oracle = read_metadata(runs["full"]), read_metadata(runs["oracle"])

    def config(metadata: ArtifactMetadata, **changes) -> ArtifactMetadata:
        return replace(metadata, training={**metadata.training, "config": changes})

    written = full.training["config"]
    older = {k: v for k, v in written.items() if k not in ("autocast", "depth_draw")}
    check_oracle(oracle, config(full, **older), forget_ids=forget)
    drawn = {**written, "depth_draw": "per-epoch"}
    for candidate, original in ((config(oracle, **drawn), config(full, **older)),
                                (oracle, config(full, **written, future_setting=1))):
        with pytest.raises(OracleMismatch) as caught:
            check_oracle(candidate, original, forget_ids=forget)
        assert caught.value.field == "training.config"


def test_verification_refuses_an_oracle_that_is_not_the_originals_retrain(secret_corpus, runs) -> None:
    from types import SimpleNamespace

    from mllm.verify import subject
    from mllm.verify.verifier import VerifyInputError, comparable_oracle

    corpus, forget = secret_corpus
    records = {r.record_id: r for r in corpus.records}
    scope = SimpleNamespace(forget=[records[i] for i in forget])
    original, oracle = subject("original", runs["full"]), subject("oracle", runs["oracle"])
    comparable_oracle(original, oracle, scope)
    refused = [
        (original, subject("oracle", runs["other-recipe"]), scope, "training.config"),
        (original, oracle, SimpleNamespace(forget=scope.forget[:-1]), "training.excluded_sha256"),
        (original, original, scope, "kind"),
        (original, replace(oracle, metadata=None), scope, "Oblivio artifacts"),
    ]
    for first, second, groups, reason in refused:
        with pytest.raises(VerifyInputError, match=reason):
            comparable_oracle(first, second, groups)
