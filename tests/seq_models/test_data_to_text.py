"""The data-to-text task and its exact faithfulness metrics."""

import numpy as np
import pytest

from seq_models.data_to_text import (
    VALUE_VOCABULARY,
    DataToTextSource,
    extract_values,
    record_fields,
)
from seq_models.faithfulness import parent_one, parent_scores, value_scores


@pytest.fixture(scope="module")
def examples():
    source = DataToTextSource("train", 400, seed=3)
    return [source[i] for i in range(len(source))]


def test_texts_state_exactly_the_records_facts(examples):
    for e in examples:
        fields = record_fields(e["record"])
        assert [v for _, v in fields] == e["values"]
        # Every value of the text is in the record and every record value is in the text.
        assert set(extract_values(e["text"])) == set(e["values"])


def test_the_data_is_varied_and_deterministic(examples):
    kinds = {e["kind"] for e in examples}
    assert kinds == {"person", "restaurant"}
    assert len({e["text"] for e in examples}) == len(examples)
    # The same facts are verbalised in different orders and words across examples.
    openings = {e["text"].split()[3] for e in examples if e["kind"] == "restaurant"}
    assert len(openings) > 5
    again = DataToTextSource("train", 400, seed=3)
    assert again[17] == examples[17]
    assert DataToTextSource("test", 400, seed=3)[17] != examples[17]
    assert DataToTextSource("train", 400, seed=4)[17] != examples[17]


def test_no_template_word_is_a_value():
    values = set(VALUE_VOCABULARY)
    for text in ["This person was born in the year and works for the restaurant."]:
        assert not set(extract_values(text)) & values
    assert extract_values("The Golden Fig opened in 1999 in Lyon") == [
        "The Golden Fig",
        "1999",
        "Lyon",
    ]
    assert extract_values("Lyonnais 19999 Golden") == []


def test_value_scores_count_hallucinations_and_omissions():
    values = [["Mira", "Okafor", "Lyon", "1950"], ["The Golden Fig", "Thai"]]
    outputs = [
        "Mira Okafor was born in 1950 in Porto.",  # Porto hallucinated, Lyon omitted
        "The Golden Fig serves Thai food.",
    ]
    scores = value_scores(outputs, values)
    assert scores["hallucination_rate"] == pytest.approx(1 / 6)
    assert scores["hallucinated_outputs"] == pytest.approx(0.5)
    assert scores["omission_rate"] == pytest.approx(1 / 6)
    assert scores["mentioned_values"] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="same length"):
        value_scores(outputs, values[:1])


def test_parent_precision_and_recall():
    source = DataToTextSource("validation", 20)
    e = source[0]
    assert parent_one(e["text"], e["text"], e["values"]) == pytest.approx((1.0, 1.0))
    # A hallucinated value lowers precision; a dropped fact lowers recall.
    wrong_value = next(v for v in ("Porto", "Quito") if v not in e["values"])
    words = e["text"].split(" ")
    hallucinated = " ".join(words + ["and", "visited", wrong_value + "."])
    p, r = parent_one(hallucinated, e["text"], e["values"])
    assert p < 1.0 and r == pytest.approx(1.0)
    first_sentence = e["text"].split(".")[0] + "."
    p, r = parent_one(first_sentence, e["text"], e["values"])
    assert p == pytest.approx(1.0) and r < 0.8
    # An n-gram absent from the reference but entailed by the record counts as correct.
    p, _ = parent_one(e["values"][-1], "unrelated words only", e["values"])
    assert p > 0.9
    # Hand-computed unigram-only case: output "a x", reference "a b", table {"b"}.
    p, r = parent_one("a x", "a b", ["b"])
    # precision: unigrams 1 ("a" in ref), 0 ("x"); bigram "a x": 0 -> floor; recall:
    # the reference unigram "b" (w = 1) is missed, table recall LCS(b, "a x") = 0.
    assert p < 0.05 and r < 0.01
    scores = parent_scores([e["text"], first_sentence], [e["text"]] * 2, [e["values"]] * 2)
    assert 0 < scores["parent_recall"] < 1 and scores["parent_precision"] == pytest.approx(1.0)
    assert np.isfinite(scores["parent_f1"])


def test_errors():
    with pytest.raises(ValueError, match="split must be one of"):
        DataToTextSource("dev", 10)
    with pytest.raises(ValueError, match="size must be a positive int"):
        DataToTextSource("train", 0)
    with pytest.raises(IndexError):
        DataToTextSource("train", 3)[3]
    with pytest.raises(ValueError, match="record must be"):
        record_fields("no fields")
    with pytest.raises(ValueError, match="text must be a string"):
        extract_values(None)
