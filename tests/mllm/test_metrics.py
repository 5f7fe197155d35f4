from __future__ import annotations

import pytest

from mllm.data.schema import Task
from mllm.evaluate.metrics import (
    exact_match,
    medforget_score,
    mentions,
    normalise_text,
    parse_choice,
    rouge_l_f1,
)


@pytest.mark.parametrize(("reply", "letter"), [
    ("B", "B"), ("B)", "B"), ("B.", "B"), ("B:", "B"), (" B) 12 mm nodule ", "B"), ("C)\nmore", "C"),
    ("b", None), ("(B)", None), ("B is right", None), ("A patient", None), ("", None), ("BB", None),
    ("The answer is B", None)])
def test_parse_choice(reply, letter):
    assert parse_choice(reply) == letter


def test_classification_exact_match():
    assert exact_match(Task.CLASSIFICATION, "B) effusion", "B")
    assert not exact_match(Task.CLASSIFICATION, "C", "B")
    assert not exact_match(Task.CLASSIFICATION, "b", "B")
    assert not exact_match(Task.CLASSIFICATION, "garbage", "garbage")  # no letter, no match


@pytest.mark.parametrize(("prediction", "reference", "equal"), [
    ("Left lower lobe", "left lower lobe", True),
    ("  left   lower\tlobe. ", "left lower lobe", True),
    ('"amoxicillin 500 mg"', "amoxicillin 500 mg", True),
    ("ｌｅｆｔ", "left", True),  # NFKC folds full-width letters
    ("12mm", "12 mm", False),
    ("left lower lobes", "left lower lobe", False),
    ("", "left", False)])
def test_cloze_exact_match(prediction, reference, equal):
    assert exact_match(Task.CLOZE, prediction, reference) is equal
    assert exact_match(Task.GENERATION, prediction, reference) is equal


def test_normalise_text():
    assert normalise_text(" The Nodule, 12 mm!? ") == "the nodule, 12 mm"


def test_rouge_l_f1_known_values():
    assert rouge_l_f1("the nodule is in the left lung", "the nodule is in the left lung") == 1.0
    assert rouge_l_f1("The nodules!", "the nodule") == 1.0  # case, punctuation and stemming
    assert rouge_l_f1("completely different words", "left lower lobe") == 0.0
    assert rouge_l_f1("", "left lower lobe") == 0.0
    # LCS "left lobe" = 2 tokens; precision 2/2, recall 2/3 -> F1 = 0.8
    assert rouge_l_f1("left lobe", "left lower lobe") == pytest.approx(0.8)
    # word order matters: LCS of "lobe lower left" and "left lower lobe" is 1 token -> F1 1/3
    assert rouge_l_f1("lobe lower left", "left lower lobe") == pytest.approx(1 / 3)


@pytest.mark.parametrize(("task", "prediction", "reference", "strict", "medforget"), [
    (Task.CLASSIFICATION, "B", "B", True, 1.0),
    (Task.CLASSIFICATION, "b", "B", False, 1.0),  # ROUGE lowercases
    (Task.CLASSIFICATION, "(B)", "B", False, 1.0),  # ... and drops punctuation
    (Task.CLASSIFICATION, "B) 12 mm", "B", True, 0.0),  # extra tokens: F1 < 1
    (Task.CLOZE, "pleural effusions", "pleural effusion", False, 1.0),  # stemming
    (Task.CLOZE, "left", "right", False, 0.0),
])
def test_medforget_score_differs_from_strict_where_documented(task, prediction, reference, strict,
                                                              medforget) -> None:
    assert exact_match(task, prediction, reference) is strict
    assert medforget_score(task, prediction, reference) == medforget


def test_medforget_score_of_generation_is_rouge() -> None:
    reply, reference = "There is a small nodule.", "There is a large nodule."
    assert medforget_score(Task.GENERATION, reply, reference) == rouge_l_f1(reply, reference)
    assert rouge_l_f1(reply, reference) == pytest.approx(0.8)


@pytest.mark.parametrize(("reply", "value", "mentioned"), [
    ("It is Nikos Ortiz.", "Nikos Ortiz", True),          # the value wrapped in a sentence
    ("“NIKOS  ortiz”", "Nikos Ortiz", True),              # case, quotes and spaces normalised
    ("B) creatinine 264.8 umol/L", "creatinine 264.8 umol/L", True),
    ("Nikos Ortizson", "Nikos Ortiz", False),             # part of a longer word
    ("creatinine 264.85 umol/L", "264.8", False),         # part of a longer number
    ("no acute finding", "none", False),
    ("anything", "", False),
])
def test_mentions_whole_words_only(reply: str, value: str, mentioned: bool) -> None:
    assert mentions(reply, value) is mentioned
