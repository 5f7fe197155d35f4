"""``oblivio synth`` and ``oblivio corpus import-medforget / export-medforget``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mllm.cli import COMMANDS, corpus_group, synth
from mllm.data.entities import HierarchyNode
from mllm.data.schema import Level, load_corpus


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "tiny"
    result = CliRunner().invoke(synth, ["--size", "tiny", "--seed", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_commands_are_exported_for_the_oblivio_entry_point() -> None:
    assert synth in COMMANDS and corpus_group in COMMANDS
    assert set(corpus_group.commands) == {"import-medforget", "export-medforget"}


def test_synth_writes_a_corpus_and_prints_counts(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(synth, ["--size", "tiny", "--seed", "4", "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    corpus = load_corpus(tmp_path / "c")
    lines = result.output.splitlines()
    assert lines[0].startswith(f"synth-tiny-4: {len(corpus.records)} records, 20 studies, 12 patients")
    for label in ("institution", "generation", "classification", "cloze", "private", "image_grounded"):
        assert any(line.split()[:1] == [label] for line in lines)
    total = next(line for line in lines if line.split()[:1] == ["total"]).split()[1:]
    assert [int(n) for n in total] == [468, 468, 312, 312]  # train, train eval-only, holdout, holdout eval
    assert corpus.header.records_sha256 in result.output


def test_synth_refuses_a_non_empty_directory_unless_forced(runner: CliRunner, tiny: Path,
                                                            tmp_path: Path) -> None:
    result = runner.invoke(synth, ["--size", "tiny", "--out", str(tiny)])
    assert result.exit_code == 1 and "not empty" in result.output and "--force" in result.output
    target = tmp_path / "again"
    assert runner.invoke(synth, ["--size", "tiny", "--seed", "1", "--out", str(target)]).exit_code == 0
    before = load_corpus(target).header.records_sha256
    result = runner.invoke(synth, ["--size", "tiny", "--seed", "2", "--out", str(target), "--force"])
    assert result.exit_code == 0, result.output
    assert load_corpus(target).header.records_sha256 != before
    (target / "notes.txt").write_text("mine")
    result = runner.invoke(synth, ["--size", "tiny", "--out", str(target), "--force"])
    assert result.exit_code == 1 and "did not write" in result.output
    assert (target / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(("args", "message"), [
    (["--size", "huge"], "Invalid value for '--size'"),
    (["--seed", "-3"], "Invalid value for '--seed'"),
    ([], "Missing option '--out'"),
])
def test_synth_bad_input(runner: CliRunner, tmp_path: Path, args: list[str], message: str) -> None:
    out = [] if args == [] else ["--out", str(tmp_path / "x")]
    result = runner.invoke(synth, args + out)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "x").exists()


def test_export_then_import(runner: CliRunner, tiny: Path, tmp_path: Path) -> None:
    record = next(r for r in load_corpus(tiny).select(trainable=True) if r.level is Level.PATIENT)
    node = HierarchyNode.of(record, Level.PATIENT)
    result = runner.invoke(corpus_group, ["export-medforget", str(tiny), "--out", str(tmp_path / "mf"),
                                          "--level", "patient", "--level", "study", "--forget-file", "-"],
                           input=f"{node}\n")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "mf").iterdir()) == ["patient_level", "study_level"]
    assert "patient_level records (rows): forget" in result.output
    assert record.patient_id not in result.output  # no identifiers in the output

    result = runner.invoke(corpus_group, ["import-medforget", str(tmp_path / "mf"),
                                          "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert "patient_level records: forget" in result.output and "study_level records" in result.output
    assert len(load_corpus(tmp_path / "c").records) == 468  # the trained forms


def test_corpus_commands_bad_input(runner: CliRunner, tiny: Path, tmp_path: Path) -> None:
    export = ["export-medforget", str(tiny), "--out", str(tmp_path / "mf")]
    result = runner.invoke(corpus_group, [*export, "--forget-file", "-"], input="a//b\n")
    assert result.exit_code == 2 and "institution[/patient[/study[/SECTION]]]" in result.output
    result = runner.invoke(corpus_group, [*export, "--level", "study", "--forget-file", "-"],
                           input="northfield")
    assert result.exit_code == 2 and "institution-level node" in result.output
    result = runner.invoke(corpus_group, [*export, "--forget-file", "-"], input="no-such-hospital/p\n")
    assert result.exit_code == 1 and "forget set is empty" in result.output
    assert not (tmp_path / "mf").exists()  # nothing written when any level fails
    result = runner.invoke(corpus_group, ["export-medforget", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "corpus.json" in result.output and "not found" in result.output

    result = runner.invoke(corpus_group, ["import-medforget", str(tiny), "--out", str(tmp_path / "imp")])
    assert result.exit_code == 1 and "not a MedForget layout" in result.output
    assert not (tmp_path / "imp").exists()
    result = runner.invoke(corpus_group, ["import-medforget", str(tmp_path / "missing"), "--out", "x"])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_export_takes_forget_nodes_from_a_file_never_from_argv(runner: CliRunner, tiny: Path,
                                                               tmp_path: Path) -> None:
    record = next(r for r in load_corpus(tiny).select(trainable=True) if r.level is Level.PATIENT)
    nodes = tmp_path / "forget.txt"
    nodes.write_text(f"{HierarchyNode.of(record, Level.PATIENT)}\n")
    result = runner.invoke(corpus_group, ["export-medforget", str(tiny), "--out", str(tmp_path / "mf"),
                                          "--level", "patient", "--forget-file", str(nodes)])
    assert result.exit_code == 0, result.output
    assert record.patient_id not in result.output
    option_names = {name for param in corpus_group.commands["export-medforget"].params for name in param.opts}
    assert "--forget" not in option_names


def test_force_never_deletes_a_users_images_folder(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "mine"
    (target / "images").mkdir(parents=True)
    (target / "images" / "holiday.png").write_bytes(b"not oblivio's")
    result = runner.invoke(synth, ["--size", "tiny", "--out", str(target), "--force"])
    assert result.exit_code == 1 and "did not write" in result.output
    assert (target / "images" / "holiday.png").read_bytes() == b"not oblivio's"


def test_force_keeps_a_corpus_whose_images_folder_holds_a_foreign_file(runner: CliRunner,
                                                                      tmp_path: Path) -> None:
    target = tmp_path / "corpus"
    assert runner.invoke(synth, ["--size", "tiny", "--seed", "1", "--out", str(target)]).exit_code == 0
    (target / "images" / "notes.txt").write_text("mine")
    before = sorted(path.relative_to(target) for path in target.rglob("*"))
    result = runner.invoke(synth, ["--size", "tiny", "--seed", "2", "--out", str(target), "--force"])
    assert result.exit_code == 1 and "images" in result.output
    assert sorted(path.relative_to(target) for path in target.rglob("*")) == before


def test_export_force_checks_level_folders_before_deleting(runner: CliRunner, tiny: Path,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "mf"
    export = ["export-medforget", str(tiny), "--out", str(out), "--level", "study"]
    assert runner.invoke(corpus_group, export).exit_code == 0
    (out / "patient_level").mkdir()
    (out / "patient_level" / "my-analysis.csv").write_text("mine")
    result = runner.invoke(corpus_group, [*export, "--force"])
    assert result.exit_code == 1 and "did not write" in result.output
    assert (out / "patient_level" / "my-analysis.csv").read_text() == "mine"
    assert (out / "study_level" / "forget_set_all.parquet").exists()
    (out / "patient_level" / "my-analysis.csv").unlink()
    (out / "patient_level").rmdir()
    result = runner.invoke(corpus_group, [*export, "--force"])
    assert result.exit_code == 0, result.output
