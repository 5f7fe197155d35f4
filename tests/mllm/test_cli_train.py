from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from mllm.cli import evaluate, pretrain, train
from mllm.data.teaching import VERSION as TEACHING_VERSION
from mllm.models.artifact import ArtifactMetadata, artifact_digest, read_metadata, save_artifact

FAST = ["--size", "tiny", "--steps", "6", "--batch-size", "8", "--threads", "2"]


@pytest.fixture(scope="module")
def trained_dir(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("artifacts") / "trained"
    save_artifact(trained.model, trained.processor, path, ArtifactMetadata(kind="fine-tuned"))
    return path


def run(command, args):
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)


def test_train_saves_an_artifact_with_provenance(corpus, tmp_path):
    result = run(train, ["--corpus", corpus.root, "--out", tmp_path / "m", *FAST, "--seed", 3])
    assert result.exit_code == 0, result.output
    assert "6 steps" in result.stdout and "digest sha256:" in result.stdout
    metadata = read_metadata(tmp_path / "m")
    assert metadata.kind == "fine-tuned" and metadata.seed == 3 and metadata.parent_digest is None
    assert metadata.corpus_sha256 == corpus.header.records_sha256
    assert metadata.training["records"] == len(corpus.select(trainable=True))
    assert not (tmp_path / "m.ckpt").exists()  # removed once the artifact is saved

    again = run(train, ["--corpus", corpus.root, "--out", tmp_path / "m", *FAST])
    assert again.exit_code == 1 and "already exists" in again.output


def test_train_with_replay_records_it_in_the_recipe(corpus, tmp_path):
    result = run(train, ["--corpus", corpus.root, "--out", tmp_path / "m", *FAST, "--replay", 1])
    assert result.exit_code == 0, result.output
    training = read_metadata(tmp_path / "m").training
    assert training["replay"] == 1 and training["replay_version"] == TEACHING_VERSION
    assert training["records"] == len(corpus.select(trainable=True))  # the corpus's; replay is extra


def test_train_records_depth_draw_and_autocast_in_the_recipe(corpus, tmp_path):
    result = run(train, ["--corpus", corpus.root, "--out", tmp_path / "m", *FAST, "--depth-draw", "per-epoch",
                         "--autocast", "bfloat16"])
    assert result.exit_code == 0, result.output
    config = read_metadata(tmp_path / "m").training["config"]
    assert config["depth_draw"] == "per-epoch" and config["autocast"] == "bfloat16"
    refused = run(train, ["--corpus", corpus.root, "--out", tmp_path / "n", *FAST, "--autocast", "float16"])
    assert refused.exit_code == 2 and not (tmp_path / "n").exists()


def test_same_seed_same_artifact_digest(corpus, tmp_path):
    digests = []
    for name in ("a", "b"):
        result = run(train, ["--corpus", corpus.root, "--out", tmp_path / name, *FAST, "--seed", 5])
        assert result.exit_code == 0, result.output
        digests.append(result.stdout.rsplit("digest sha256:", 1)[1].strip())
    assert digests[0] == digests[1]


def test_retrain_oracle_and_lora_from_a_base(corpus, trained_dir, tmp_path):
    forget = [r.record_id for r in corpus.select(trainable=True)[:4]]
    (tmp_path / "forget.txt").write_text("# forget set\n" + "\n".join(forget) + "\n")
    result = run(train, ["--corpus", corpus.root, "--out", tmp_path / "oracle", *FAST,
                         "--retain-only-exclude", tmp_path / "forget.txt"])
    assert result.exit_code == 0, result.output
    metadata = read_metadata(tmp_path / "oracle")
    assert metadata.kind == "retrain-oracle"
    assert metadata.training["records"] == len(corpus.select(trainable=True)) - 4
    assert metadata.training["excluded"] == 4

    result = run(train, ["--corpus", corpus.root, "--out", tmp_path / "lora", *FAST, "--base", trained_dir,
                         "--lora", "--lora-rank", "4", "--lora-alpha", "8", "--grad-accum", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lora" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "lora" / "model.safetensors").exists()  # adapter only, no copy of the base
    metadata = read_metadata(tmp_path / "lora")
    assert metadata.parent_digest == metadata.base_digest == artifact_digest(trained_dir)
    assert metadata.training["lora"]["rank"] == 4 and metadata.training["lora"]["alpha"] == 8
    assert metadata.training["config"]["grad_accum"] == 2

    # an adapter artifact as base: its adapter keeps training on the same full base
    result = run(train, ["--corpus", corpus.root, "--out", tmp_path / "lora2", *FAST,
                         "--base", tmp_path / "lora", "--lora"])
    assert result.exit_code == 0, result.output
    metadata = read_metadata(tmp_path / "lora2")
    assert metadata.base_digest == artifact_digest(trained_dir)
    assert metadata.parent_digest == artifact_digest(tmp_path / "lora")


def test_pretrained_base_is_a_clean_start_for_the_retrain_oracle(corpus, trained_dir, tmp_path):
    result = run(pretrain, ["--out", tmp_path / "base", "--size", "tiny", "--cases", 6, "--epochs", 1,
                            "--batch-size", 8, "--threads", 2])
    assert result.exit_code == 0, result.output
    assert "96 records" in result.stdout and "digest sha256:" in result.stdout
    base = read_metadata(tmp_path / "base")
    assert base.kind == "pretrained-base" and base.training["teaching_cases"] == 6
    assert not (tmp_path / "base.ckpt").exists()
    again = run(pretrain, ["--out", tmp_path / "base", "--size", "tiny", "--cases", 6])
    assert again.exit_code == 1 and "already exists" in again.output
    nothing = run(pretrain, ["--out", tmp_path / "other", "--size", "tiny", "--cases", 6, "--resume"])
    assert nothing.exit_code == 1 and "no training checkpoint" in nothing.output

    (tmp_path / "forget.txt").write_text(corpus.select(trainable=True)[0].record_id + "\n")
    exclude = ["--retain-only-exclude", tmp_path / "forget.txt"]
    for start, kind in ((tmp_path / "base", "retrain-oracle"), (trained_dir, "fine-tuned")):
        out = tmp_path / f"from-{start.name}"
        result = run(train, ["--corpus", corpus.root, "--out", out, *FAST, "--base", start, *exclude])
        assert result.exit_code == 0, result.output
        metadata = read_metadata(out)
        assert metadata.kind == kind, start  # a base that saw the corpus cannot give an oracle
        assert metadata.parent_digest is not None and metadata.training["excluded"] == 1


def test_train_refuses_bad_input(corpus, tmp_path):
    base = ["--corpus", corpus.root, "--out", tmp_path / "m", *FAST]
    cases = [
        (["--base", "llava-hf/llava-1.5-7b-hf"], "looks like a model-hub name"),
        (["--resume"], "no training checkpoint"),
        (["--epochs", "2"], "--epochs or --steps, not both"),
        (["--lora"], "LoRA trains adapters on a base model"),
        (["--device", "quantum:0"], "unknown device"),
    ]
    (tmp_path / "ids.txt").write_text("no-such-record\n")
    cases.append((["--retain-only-exclude", tmp_path / "ids.txt"], "not trainable records"))
    for extra, message in cases:
        result = run(train, [*base, *extra])
        assert result.exit_code != 0 and message in result.output, (extra, result.output)
    missing = run(train, ["--corpus", tmp_path / "missing", "--out", tmp_path / "m"])
    assert missing.exit_code == 2 and "does not exist" in missing.output

    broken = tmp_path / "broken"
    shutil.copytree(corpus.root, broken)
    (broken / "records.jsonl").write_text("{not json\n")
    result = run(train, ["--corpus", broken, "--out", tmp_path / "m", *FAST])
    assert result.exit_code == 1 and "records.jsonl:1" in result.output
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(("command", "extra", "message"), [
    (train, ["--steps", "1", "--lr", "inf"], "lr must be a number in [0, 1.0]"),  # saved a NaN model
    (train, ["--steps", "1", "--lr", "nan"], "lr must be a number in [0, 1.0]"),
    (train, ["--steps", "1", "--lr", "1e300"], "lr must be a number in [0, 1.0]"),  # AdamW overflowed
    (train, ["--epochs", "inf"], "epochs must be a finite number above 0"),
    (pretrain, ["--lr", "nan"], "lr must be a number in [0, 1.0]"),
])
def test_training_settings_no_run_can_use_are_usage_errors(corpus, tmp_path, command, extra, message):
    base = ["--corpus", corpus.root, "--size", "tiny"] if command is train else ["--size", "tiny"]
    result = run(command, [*base, "--out", tmp_path / "m", *extra])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "m").exists()


def test_eval_prints_tables_and_json(corpus, trained_dir, tmp_path):
    result = run(evaluate, ["--model", trained_dir, "--corpus", corpus.root, "--by", "group,fact_kind",
                            "--max-new-tokens", "16"])
    assert result.exit_code == 0, result.output
    assert "| group | fact_kind | n | exact match | ROUGE-L F1 | MedForget |" in result.stdout
    private = [r for r in corpus.select(trainable=True) if r.fact_kind.value == "private"]
    row = next(line for line in result.stdout.splitlines() if line.startswith("| train | private |"))
    assert row.split("|")[3].strip() == str(len(private)) and float(row.split("|")[4]) >= 0.9

    result = run(evaluate, ["--model", trained_dir, "--corpus", corpus.root, "--by", "group,depth",
                            "--depth", "0,4", "--max-new-tokens", "16"])
    assert result.exit_code == 0, result.output
    assert "| train | 0 |" in result.stdout and "| train | 4 |" in result.stdout
    for bad in ("5", "x", ""):
        result = run(evaluate, ["--model", trained_dir, "--corpus", corpus.root, "--depth", bad])
        assert result.exit_code == 2 and "--depth" in result.output

    groups = {"forget": [r.record_id for r in corpus.select(trainable=True)[:2]],
              "holdout": [r.record_id for r in corpus.select(trainable=False)]}
    (tmp_path / "groups.json").write_text(json.dumps(groups))
    result = run(evaluate, ["--model", trained_dir, "--corpus", corpus.root, "--groups",
                            tmp_path / "groups.json", "--json", "--mode", "teacher-forced"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["mode"] == "teacher_forced"
    assert {row["group"] for row in document["table"]} == {"forget", "holdout"}
    assert len(document["answers"]) == 2 + len(groups["holdout"])
    assert {"medforget", "depth"} <= set(document["answers"][0])


def test_eval_refuses_bad_input(corpus, trained_dir, tmp_path):
    (tmp_path / "groups.json").write_text(json.dumps({"forget": ["nope"]}))
    cases = [
        (["--model", "llava-hf/llava-1.5-7b-hf", "--corpus", corpus.root], "looks like a model-hub name"),
        (["--model", tmp_path / "none", "--corpus", corpus.root], "does not exist"),
        (["--model", trained_dir, "--corpus", corpus.root, "--groups", tmp_path / "groups.json"],
         "unknown record ids"),
        (["--model", trained_dir, "--corpus", corpus.root, "--by", "group,colour"], "unknown key 'colour'"),
        (["--model", trained_dir, "--corpus", tmp_path], "corpus.json: not found"),
    ]
    for args, message in cases:
        result = run(evaluate, args)
        assert result.exit_code != 0 and message in result.output, (args, result.output)
