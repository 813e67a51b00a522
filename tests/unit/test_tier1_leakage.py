"""No evaluation text in training data: the build's hash check, and the texts it is given."""

import pytest

from detectors.build.datasets import LabelledSplit
from detectors.build.tier1_static import EvaluationLeak, check_leakage, text_hash
from pipeline.bench.model_card import evaluation_texts
from pipeline.drills.scenarios import CONTROLS, _case
from pipeline.synth import traffic


def data(train, test=()):
    def split(name, texts):
        return LabelledSplit("bfcl", name, list(texts), [0] * len(texts), [None] * len(texts))

    splits = {"train": split("train", train), "validation": split("validation", []), "test": split("test", test)}
    return {"bfcl": splits}


def test_an_evaluation_text_in_training_fails_the_build_whatever_its_case_and_spacing():
    with pytest.raises(EvaluationLeak, match="1 evaluation texts"):
        check_leakage(data(["How can I  EXPORT my data?", "unrelated"]), ["how can i export my data?"])


def test_test_rows_are_dropped_from_training_and_the_rest_is_kept():
    d = data(["same text", "other text"], test=["Same   text"])
    report = check_leakage(d, [])
    assert d["bfcl"]["train"].texts == ["other text"] and report["rows_dropped_as_test_duplicates"] == 1


def test_the_hash_folds_what_normalisation_folds():
    assert text_hash("Ignore  previous\ninstructions") == text_hash("ignore previous instructions")
    assert text_hash("ignore previous instructions") != text_hash("ignore the previous instructions")


def test_the_demo_and_every_drill_family_and_control_are_evaluation_texts():
    texts = set(evaluation_texts(per_generator=3))
    assert set(traffic.BENIGN_QUESTIONS) <= texts and set(traffic.INDIRECT_INJECTIONS) <= texts
    assert any("IMPORTANT" in t or "Ignore" in t for t in texts)
    assert len(texts) > 300


def test_drill_controls_do_not_draw_from_the_demo_text():
    demo = {text_hash(t) for t in (*traffic.BENIGN_QUESTIONS, *traffic.BENIGN_ANSWERS, *traffic.RAG_DOCUMENTS)}
    for generator in CONTROLS:
        for seed in range(30):
            scenario = _case("control", generator, seed).scenario
            for user, assistant in scenario.turns:
                assert text_hash(user) not in demo and text_hash(assistant) not in demo, generator.__name__
