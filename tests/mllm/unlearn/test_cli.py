"""``oblivio unlearn``: identifiers only in files, clear errors, non-zero exit, nothing half-written."""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner

from mllm.models.artifact import METADATA_FILE, artifact_digest
from mllm.models.loader import load_model
from mllm.unlearn.cli import unlearn_command


def invoke(*args):
    return CliRunner().invoke(unlearn_command, [str(a) for a in args])


def base_args(bed, out, method="hierarchy", forget=None):
    return ["--model", bed.model_dir, "--corpus", bed.corpus.root, "--forget-file", forget or bed.scope_file,
            "--method", method, "--out", out, "--threads", 2]


def test_unlearning_a_fine_tuned_model_writes_a_model_that_does_not_need_it(bed, tmp_path):
    """The fine-tuned weights still hold the forgotten data and are deleted once the result is served:
    the result is a full model (adapter merged), never an adapter over them."""
    original = tmp_path / "original"
    shutil.copytree(bed.model_dir, original)
    result = invoke(*base_args(bed, tmp_path / "out"), "--model", original, "--config", _steps(tmp_path, 4),
                    "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["steps"]) == 4 and data["guard"]["passed"] and data["provenance"]["config"]["steps"] == 4
    shutil.rmtree(original)
    assert not (tmp_path / "out" / "adapter_config.json").exists()
    assert load_model(tmp_path / "out").metadata.kind == "unlearned"


def test_over_a_base_that_never_saw_a_corpus_the_result_is_adapter_only(bed, tmp_path):
    base = tmp_path / "base"  # stands in for a pretrained checkpoint (kind pretrained-base)
    shutil.copytree(bed.model_dir, base)
    metadata = json.loads((base / METADATA_FILE).read_text())
    (base / METADATA_FILE).write_text(json.dumps({**metadata, "kind": "pretrained-base"}))
    result = invoke(*base_args(bed, tmp_path / "out"), "--model", base, "--config", _steps(tmp_path, 2))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "adapter_config.json").is_file()
    assert load_model(tmp_path / "out").base.digest == artifact_digest(base)


def _steps(tmp_path, steps: int):
    """A hierarchy config for exactly ``steps`` steps (no minimum pass over the forget items)."""
    path = tmp_path / "steps.json"
    path.write_text(json.dumps({"steps": steps, "min_forget_passes": 0}), encoding="utf-8")
    return path


def test_bad_input_fails_clearly_without_echoing_identifiers(bed, tmp_path):
    first = bed.scope.forget[0]
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"institution_id": first.institution_id, "patient_id": "99999999"}),
                       encoding="utf-8")
    cases = {
        "unknown method": (base_args(bed, tmp_path / "a", method="magic"), "unknown unlearning method"),
        "missing scope file": (base_args(bed, tmp_path / "b", forget=tmp_path / "none.json"),
                               "FileNotFoundError"),
        "unknown patient": (base_args(bed, tmp_path / "c", forget=unknown), "owns no trainable record"),
        "existing out": (base_args(bed, bed.model_dir), "already exists"),
        "exact without a recipe": (base_args(bed, tmp_path / "e", method="exact"), "no training recipe"),
    }
    for name, (args, message) in cases.items():
        result = invoke(*args)
        assert result.exit_code == 2, name
        assert message in result.output, (name, result.output)
        assert "99999999" not in result.output and first.patient_id not in result.output
    bad_config = tmp_path / "bad.json"
    bad_config.write_text(json.dumps({"stepz": 3}), encoding="utf-8")
    result = invoke(*base_args(bed, tmp_path / "d"), "--config", bad_config)
    assert result.exit_code == 2 and "no config field 'stepz'" in result.output
    assert not any((tmp_path / name).exists() for name in "abcde")


def test_a_collapsed_run_exits_1_and_writes_nothing(bed, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"lr": 3e-2, "steps": 10}), encoding="utf-8")
    result = invoke(*base_args(bed, tmp_path / "out", method="ga"), "--config", config)
    assert result.exit_code == 1 and "collapse guard failed" in result.output
    assert not (tmp_path / "out").exists()
