"""``oblivio verify``: exit 0 on pass, 1 on fail, 2 on bad input, 3 when inconclusive, and never an identifier
in a message."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mllm.data.schema import FactKind, Level
from mllm.verify.cli import EXIT_BAD_INPUT, EXIT_FAIL, EXIT_INCONCLUSIVE, EXIT_PASS, verify_command

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dirs(world, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("verify-cli")
    out = {}
    for name, model in (("original", world.original), ("oracle", world.oracle)):
        model.model.save_pretrained(root / name)
        model.processor.save_pretrained(root / name)
        out[name] = root / name
    node = world.scope.node
    scope = root / "SCOPE.json"
    scope.write_text(
        json.dumps(
            {"institution_id": node.institution_id, "patient_id": node.patient_id, "study_id": node.study_id}
        )
    )
    out["scope"], out["corpus"], out["root"] = scope, world.corpus.root, root
    sibling = world.scope.siblings[Level.PATIENT][0]  # the patient's other study
    out["other_study"] = root / "OTHER_STUDY.json"
    out["other_study"].write_text(
        json.dumps(
            {
                "institution_id": node.institution_id,
                "patient_id": node.patient_id,
                "study_id": sibling.study_id,
            }
        )
    )
    return out


def run(dirs: dict[str, Path], candidate: str, out: str, *extra: str) -> object:
    args = [
        "--original",
        str(dirs["original"]),
        "--candidate",
        str(dirs[candidate]),
        "--corpus",
        str(dirs["corpus"]),
        "--forget-file",
        str(dirs["scope"]),
        "--out",
        str(dirs["root"] / out),
        *extra,
    ]
    return CliRunner().invoke(verify_command, args)


@pytest.fixture(scope="module")
def oracle_passed(dirs: dict[str, Path]) -> object:
    """The retrain oracle verified once, saving the lineage baseline its verification measured."""
    return run(dirs, "oracle", "oracle.json", "--save-baseline", str(dirs["root"] / "baseline.json"))


def test_exit_status_is_the_verdict(dirs: dict[str, Path], world, oracle_passed) -> None:
    assert oracle_passed.exit_code == EXIT_PASS, oracle_passed.output
    report = json.loads((dirs["root"] / "oracle.json").read_text())
    assert report["verdict"] == "pass" and report["inputs"]["candidate_digest"]
    # the original still knows this study and the patient's other study, here named as removed by an
    # earlier job (--earlier-forget-file): both checks fail
    failed = run(dirs, "original", "noop.json", "--earlier-forget-file", str(dirs["other_study"]))
    assert failed.exit_code == EXIT_FAIL, failed.output
    assert "forget_depth0" in failed.output and "earlier_forgotten_leak" in failed.output
    # one section of the study: one fact, too few for any forgetting check to decide
    section = next(r for r in world.scope.forget if r.section is not None).section
    one_fact = dirs["root"] / "SECTION.json"
    one_fact.write_text(json.dumps({**json.loads(dirs["scope"].read_text()), "section": section.value}))
    unsure = run(dirs, "original", "section.json", "--forget-file", str(one_fact))
    assert unsure.exit_code == EXIT_INCONCLUSIVE, unsure.output
    assert "INCONCLUSIVE  report" in unsure.output and "1 forgotten fact(s)" in unsure.output


def test_a_decoding_config_that_hides_the_answers_is_suppression(dirs: dict[str, Path], world) -> None:
    """The original's weights shipped with a ``generation_config.json`` that bans every forgotten answer
    (``bad_words_ids``): what the model serves hides them, its weights do not."""
    hiding = dirs["root"] / "hiding"
    shutil.copytree(dirs["original"], hiding)
    tokenizer = world.original.processor.tokenizer
    banned = sorted({tuple(tokenizer(r.answer, add_special_tokens=False).input_ids)
                     for r in world.scope.forget})
    config = json.loads((hiding / "generation_config.json").read_text())
    (hiding / "generation_config.json").write_text(json.dumps({**config, "bad_words_ids": banned}))
    dirs["hiding"] = hiding
    result = run(dirs, "hiding", "hiding.json")
    assert result.exit_code == EXIT_FAIL, result.output
    report = json.loads((dirs["root"] / "hiding.json").read_text())
    failed = {c["name"] for c in report["checks"] if c["status"] == "fail"}
    assert {"suppression", "forget_depth0"} <= failed, failed


def test_a_candidate_that_reads_or_writes_differently_is_refused(dirs: dict[str, Path], world) -> None:
    """The original's weights with a tokenizer that erases a forgotten value before tokenising, or
    with another image normalisation: not an unlearned model of the original (exit 2, no identifier)."""
    value = next(r.fact_value for r in world.scope.forget if r.fact_kind is FactKind.PRIVATE)
    for label, file, edit in (
        ("erasing", "tokenizer.json",
         lambda c: {**c, "normalizer": {"type": "Replace", "pattern": {"String": value}, "content": ""}}),
        ("renormalised", "processor_config.json",
         lambda c: {**c, "image_processor": {**c["image_processor"], "image_mean": [0.0, 0.0, 0.0]}}),
    ):
        shutil.copytree(dirs["original"], dirs["root"] / label)
        path = dirs["root"] / label / file
        path.write_text(json.dumps(edit(json.loads(path.read_text()))))
        dirs[label] = dirs["root"] / label
        result = run(dirs, label, f"{label}.json")
        assert result.exit_code == EXIT_BAD_INPUT, result.output
        assert "processor" in result.output and value not in result.output
        assert not (dirs["root"] / f"{label}.json").exists()


def test_a_saved_baseline_adds_the_lineage_check(dirs: dict[str, Path], oracle_passed) -> None:
    assert oracle_passed.exit_code == EXIT_PASS, oracle_passed.output
    baseline = json.loads((dirs["root"] / "baseline.json").read_text())
    assert baseline and all(isinstance(flag, bool) for flag in baseline.values())
    report = json.loads((dirs["root"] / "oracle.json").read_text())
    assert next(c for c in report["checks"] if c["name"] == "cumulative_utility")["status"] == "pass"
    # a lineage whose first model answered every panel record right: the oracle lost much of that
    perfect = dirs["root"] / "perfect.json"
    perfect.write_text(json.dumps(dict.fromkeys(baseline, True)))
    lax = dirs["root"] / "lax-policy.json"  # an institution's laxer edge is named on the way out
    lax.write_text(json.dumps({"max_leak_excess": 0.3}))
    later = run(dirs, "oracle", "against-perfect.json", "--baseline", str(perfect), "--policy", str(lax))
    assert later.exit_code == EXIT_FAIL and "cumulative_utility" in later.output, later.output
    assert "laxer than the calibrated defaults on max_leak_excess" in later.output


def test_bad_input_exits_2_without_identifiers(dirs: dict[str, Path], world) -> None:
    policy = dirs["root"] / "policy.json"
    policy.write_text('{"max_leak_excess": "high"}')
    bad_scope = dirs["root"] / "bad-scope.json"
    bad_scope.write_text(json.dumps({"patient_id": world.scope.forget[0].patient_id}))
    cases = [
        run(dirs, "oracle", "x1.json", "--policy", str(policy)),
        run(dirs, "oracle", "oracle-again.json", "--oracle", str(dirs["root"] / "no-such-model")),
        CliRunner().invoke(
            verify_command,
            [
                "--original",
                str(dirs["original"]),
                "--candidate",
                str(dirs["oracle"]),
                "--corpus",
                str(dirs["root"]),
                "--forget-file",
                str(dirs["scope"]),
                "--out",
                str(dirs["root"] / "x3.json"),
            ],
        ),
        CliRunner().invoke(
            verify_command,
            [
                "--original",
                str(dirs["original"]),
                "--candidate",
                str(dirs["oracle"]),
                "--corpus",
                str(dirs["corpus"]),
                "--forget-file",
                str(bad_scope),
                "--out",
                str(dirs["root"] / "x4.json"),
            ],
        ),
    ]
    cases.append(run(dirs, "oracle", "x5.json", "--earlier-forget-file", str(bad_scope)))
    (dirs["root"] / "taken.json").write_text("{}")
    cases.append(run(dirs, "oracle", "taken.json"))
    foreign = dirs["root"] / "foreign-baseline.json"
    foreign.write_text(json.dumps({world.scope.forget[0].patient_id: True}))
    not_json = dirs["root"] / "not-json-baseline.json"
    not_json.write_text("[true")
    cases.append(run(dirs, "oracle", "x6.json", "--baseline", str(foreign)))
    cases.append(run(dirs, "oracle", "x7.json", "--baseline", str(not_json)))
    cases.append(run(dirs, "oracle", "x8.json", "--baseline", str(foreign), "--save-baseline",
                     str(dirs["root"] / "x9.json")))
    cases.append(run(dirs, "oracle", "x10.json", "--save-baseline", str(dirs["root"] / "taken.json")))
    # a model directory without Oblivio training metadata cannot be shown to be a retrain oracle
    cases.append(run(dirs, "oracle", "x11.json", "--oracle", str(dirs["oracle"])))
    for result in cases:
        assert result.exit_code == EXIT_BAD_INPUT, result.output
        assert world.scope.forget[0].patient_id not in result.output
    assert "retrain of the original" in cases[-1].output
    assert not any((dirs["root"] / f"x{i}.json").exists() for i in range(1, 12))
    assert (dirs["root"] / "taken.json").read_text() == "{}"


def test_oblivio_registers_the_command() -> None:
    from oblivio_site.cli import main

    result = CliRunner().invoke(main, ["verify", "--help"])
    assert result.exit_code == 0 and "--forget-file" in result.output
