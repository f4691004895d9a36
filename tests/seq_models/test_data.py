"""Tests of the text side of seq_models: tokenizer, summarization data, ROUGE, gap sentences."""

from __future__ import annotations

import pickle
import re
import statistics
import string

import numpy as np
import pytest
from rouge_score import rouge_scorer

from seq_models.gap_sentences import (
    GapSentenceTransform,
    choose_sentences,
    mask_document,
    mask_sentence_ids,
    principal_scores,
    unmask_document,
    unmask_ids,
)
from seq_models.rouge import (
    baseline_rouge,
    lead_k,
    random_sentences,
    rouge,
    rouge_per_example,
    sentence_spans,
    split_sentences,
)
from seq_models.summarization import (
    SPLITS,
    DocSummarization,
    SummarizationTransform,
    extract_examples,
    load_summarization,
    split_examples,
    summarization_config,
)
from seq_models.summarization import corpus as corpus_module
from seq_models.tokenizer import EOS_ID, PAD_ID, UNK_ID, Tokenizer, fit_to_length, train_tokenizer

NUM_SENTINELS = 8
TINY = {"sources": ("python",), "max_examples": 6}

ASCII_TEXT = "The quick brown fox jumps over the lazy dog. It returns 42 values, (a + b) * c!"

DOCUMENT = (
    "Sorting lists is a common task. Python sorts lists with the sort method. "
    "The sort method is stable, so equal items keep their order.\n\n"
    "Sorting dictionaries needs a key. A lambda can serve as the key. "
    "Tuples compare item by item."
)


def _training_text() -> list[str]:
    from pydoc_data.topics import topics

    printable = string.ascii_letters + string.digits + string.punctuation
    return [printable] + [topics[n] for n in ("if", "for", "while", "class", "function", "try")]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokenizer") / "small"
    return train_tokenizer(_training_text(), path, 300, num_sentinels=NUM_SENTINELS)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, tokenizer):
    data_dir = tmp_path_factory.mktemp("tfds")
    splits = {
        s: load_summarization(s, data_dir=data_dir, tokenizer=tokenizer, **TINY) for s in SPLITS
    }
    return data_dir, splits


@pytest.fixture(scope="module")
def python_examples():
    return extract_examples(("python",))


# ---------------------------------------------------------------------------
# Tokenizer.


def test_special_ids_and_sentinels(tokenizer):
    assert (tokenizer.pad_id, tokenizer.eos_id, tokenizer.unk_id) == (PAD_ID, EOS_ID, UNK_ID)
    assert (PAD_ID, EOS_ID, UNK_ID) == (0, 1, 2)
    assert tokenizer.vocab_size == 300
    assert tokenizer.sentinel_ids == tuple(range(3, 3 + NUM_SENTINELS))
    pieces = [tokenizer.processor.id_to_piece(i) for i in range(3 + NUM_SENTINELS)]
    assert pieces[:3] == ["<pad>", "</s>", "<unk>"]
    assert pieces[3:] == [f"<extra_id_{k}>" for k in range(NUM_SENTINELS)]
    ids = tokenizer.encode("if <extra_id_5> else")
    assert tokenizer.sentinel_id(5) in ids
    assert tokenizer.decode(ids) == "if <extra_id_5> else"
    with pytest.raises(ValueError, match="k must be"):
        tokenizer.sentinel_id(NUM_SENTINELS)


def test_ascii_round_trip_eos_and_padding(tokenizer):
    ids = tokenizer.encode(ASCII_TEXT)
    assert UNK_ID not in ids and all(3 + NUM_SENTINELS <= i < 300 for i in ids)
    assert tokenizer.decode(ids) == ASCII_TEXT
    with_eos = tokenizer.encode(ASCII_TEXT, add_eos=True)
    assert with_eos == [*ids, EOS_ID]
    # Decoding skips padding and stops at the first EOS.
    assert tokenizer.decode([PAD_ID, *ids, EOS_ID, *ids, PAD_ID]) == ASCII_TEXT
    assert tokenizer.decode(np.array([*ids, EOS_ID, PAD_ID, PAD_ID], np.int32)) == ASCII_TEXT


def test_unknown_characters_map_to_unk(tokenizer):
    ids = tokenizer.encode("if \u65e5\u672c\u8a9e else")
    assert ids.count(UNK_ID) == 1  # a run of unknown characters is one <unk>
    assert tokenizer.decode(ids) == "if  \u2047  else"
    assert UNK_ID in tokenizer.encode("\u2603")


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_text_is_an_error(tokenizer, text):
    with pytest.raises(ValueError, match="text must hold some non-whitespace"):
        tokenizer.encode(text)


def test_training_errors_and_determinism(tmp_path):
    with pytest.raises(ValueError, match="texts must hold some non-whitespace text"):
        train_tokenizer(["", "  \n"], tmp_path / "a", 200)
    with pytest.raises(ValueError, match="names no file"):
        train_tokenizer("just a sentence", tmp_path / "a", 200)
    with pytest.raises(ValueError, match="vocab_size must be larger than 103"):
        train_tokenizer(["some text"], tmp_path / "a", 103, num_sentinels=100)
    text_file = tmp_path / "corpus.txt"
    text_file.write_text("\n".join(_training_text()[:2]), encoding="utf-8")
    first = train_tokenizer(text_file, tmp_path / "one", 150, num_sentinels=2)
    train_tokenizer(text_file, tmp_path / "two.model", 150, num_sentinels=2)
    assert first.path == str(tmp_path / "one.model")
    assert (tmp_path / "one.model").read_bytes() == (tmp_path / "two.model").read_bytes()
    assert (tmp_path / "one.vocab").exists()


def test_bad_model_files(tmp_path, tokenizer):
    missing = tmp_path / "missing.model"
    with pytest.raises(ValueError, match=re.escape(repr(str(missing)))):
        Tokenizer(missing)
    text = tmp_path / "not_a_model.model"
    text.write_text("this is not a sentencepiece model", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(repr(str(text)))):
        Tokenizer(text)
    loaded = Tokenizer(tokenizer.path)
    assert loaded.encode(ASCII_TEXT) == tokenizer.encode(ASCII_TEXT)
    restored = pickle.loads(pickle.dumps(tokenizer))
    assert restored.encode(ASCII_TEXT) == tokenizer.encode(ASCII_TEXT)


def test_fit_to_length_truncates_and_keeps_eos():
    ids, mask = fit_to_length([5, 6, 7, 8], 3, eos_id=1, pad_id=0)
    assert ids.dtype == np.int32 and mask.dtype == bool
    assert ids.tolist() == [5, 6, 1] and mask.tolist() == [True, True, True]
    ids, mask = fit_to_length([5, 6], 5, eos_id=1, pad_id=0)
    assert ids.tolist() == [5, 6, 1, 0, 0] and mask.tolist() == [True, True, True, False, False]
    with pytest.raises(ValueError, match="length must be an integer >= 2"):
        fit_to_length([5], 1, eos_id=1, pad_id=0)


# ---------------------------------------------------------------------------
# Summarization data.


def test_summaries_are_removed_from_documents(python_examples):
    assert len(python_examples) > 300
    kinds = {e.id.split(":")[1] for e in python_examples}
    assert kinds == {"topic", "module", "class", "function"}
    for example in python_examples:
        assert example.summary not in example.document
        assert example.summary not in " ".join(example.document.split())
        assert len(example.document.split()) >= 100
        assert 3 <= len(example.summary.split()) <= corpus_module.MAX_SUMMARY_WORDS
    # Some documents are long.
    assert max(len(e.document.split()) for e in python_examples) > 3000


def test_splits_are_disjoint_and_seeded(python_examples):
    splits = {s: split_examples(python_examples, s) for s in SPLITS}
    ids = [{e.id for e in chosen} for chosen in splits.values()]
    groups = [{e.group for e in chosen} for chosen in splits.values()]
    assert sum(map(len, ids)) == len(python_examples)
    for i in range(3):
        for j in range(i + 1, 3):
            assert not ids[i] & ids[j] and not groups[i] & groups[j]
    assert 0.6 < len(splits["train"]) / len(python_examples) < 0.95
    again = split_examples(python_examples, "test")
    assert again == splits["test"]
    other = split_examples(python_examples, "test", seed=1)
    assert {e.id for e in other} != ids[2]
    assert split_examples(python_examples, "test", max_examples=3) == splits["test"][:3]


def test_extraction_is_deterministic(python_examples):
    corpus_module._extract.cache_clear()
    assert extract_examples(("python",)) == python_examples


def test_builder_round_trip(tiny_data, tokenizer, python_examples):
    data_dir, splits = tiny_data
    for split, source in splits.items():
        expected = split_examples(python_examples, split, max_examples=TINY["max_examples"])
        assert len(source) == len(expected) == TINY["max_examples"]
        for i, example in enumerate(expected):
            item = source[i]
            assert set(item) == {"id", "document", "summary"}
            assert isinstance(item["document"], str)
            assert (item["id"], item["document"], item["summary"]) == (
                example.id,
                example.document,
                example.summary,
            )
    builder = DocSummarization(config=summarization_config(**TINY), data_dir=data_dir)
    assert builder.builder_config.name.startswith("python3-")
    assert builder.builder_config.name.endswith("_max6")
    lengths = builder.info.metadata["lengths"]
    assert set(lengths) == set(SPLITS)
    for split, source in splits.items():
        chars = [len(source[i]["document"]) for i in range(len(source))]
        tokens = [len(tokenizer.encode(source[i]["document"])) for i in range(len(source))]
        assert lengths[split]["examples"]["count"] == len(source)
        assert lengths[split]["document_chars"] == {
            "min": min(chars),
            "median": statistics.median(chars),
            "max": max(chars),
        }
        assert lengths[split]["document_tokens"]["max"] == max(tokens)
        assert lengths[split]["summary_tokens"]["min"] >= 1
    assert "document_tokens" in builder.info.description
    assert f"max {max(chars):>7g}" in builder.info.description


def test_config_validation():
    with pytest.raises(ValueError, match="sources must be a non-empty subset"):
        summarization_config(sources=("python", "pandas"))
    with pytest.raises(ValueError, match="validation_fraction \\+ test_fraction must be below 1"):
        summarization_config(validation_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match="split must be one of"):
        load_summarization("dev")
    name = summarization_config(sources=("python",), seed=3, min_document_words=50).name
    assert name.endswith("_seed3_minwords50")


def test_summarization_transform(tiny_data, tokenizer):
    _, splits = tiny_data
    example = splits["train"][0]
    transform = SummarizationTransform(tokenizer, 64, 16)
    out = transform(example)
    assert {k: (v.dtype, v.shape) for k, v in out.items()} == {
        "inputs": (np.int32, (64,)),
        "inputs_mask": (bool, (64,)),
        "targets": (np.int32, (16,)),
        "targets_mask": (bool, (16,)),
    }
    document_ids = tokenizer.encode(example["document"])
    assert len(document_ids) > 63  # truncated: 63 ids and the EOS
    assert out["inputs"].tolist() == [*document_ids[:63], EOS_ID]
    assert out["inputs_mask"].all()
    summary_ids = tokenizer.encode(example["summary"])
    n = min(len(summary_ids), 15) + 1
    assert out["targets_mask"].tolist() == [True] * n + [False] * (16 - n)
    assert out["targets"][n - 1] == EOS_ID and (out["targets"][n:] == PAD_ID).all()
    with pytest.raises(ValueError, match="input_length must be an integer >= 2"):
        SummarizationTransform(tokenizer, 1, 16)


# ---------------------------------------------------------------------------
# ROUGE and baselines.


def test_rouge_against_hand_computed_values():
    # Unigrams: 4 of 6 shared (the, cat, on, mat) -> P = R = F = 2/3.
    # Bigrams: 1 of 5 shared ("the cat") -> 1/5. LCS "the cat on mat" -> 4/6.
    scores = rouge(["the cat lay on a mat"], ["the cat sat on the mat"])
    assert scores["rouge1"] == pytest.approx(2 / 3)
    assert scores["rouge2"] == pytest.approx(1 / 5)
    assert scores["rougeL"] == pytest.approx(2 / 3)
    # Stemming: "running cats" matches "run cat".
    assert rouge(["running cats"], ["run cat"])["rouge1"] == pytest.approx(1.0)
    identity = rouge([DOCUMENT, ASCII_TEXT], [DOCUMENT, ASCII_TEXT])
    assert identity == pytest.approx({"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0})
    pairs = (["a b c", "x y"], ["a b d", "x z"])
    per_example = rouge_per_example(*pairs)
    assert per_example["rouge1"] == pytest.approx([2 / 3, 1 / 2])
    assert rouge(*pairs)["rouge1"] == pytest.approx(np.mean([2 / 3, 1 / 2]))
    with pytest.raises(ValueError, match="same length"):
        rouge(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="at least one"):
        rouge([], [])


def test_sentence_spans():
    text = "First one. Second, e.g. this! Third?\n\n  Fourth (paragraph) here.\nSame para"
    sentences = split_sentences(text)
    assert sentences == [
        "First one.",
        "Second, e.g. this!",
        "Third?",
        "Fourth (paragraph) here.",
        "Same para",
    ]
    spans = sentence_spans(text)
    gaps = [text[: spans[0][0]]] + [
        text[a[1] : b[0]] for a, b in zip(spans[:-1], spans[1:], strict=True)
    ]
    assert all(not gap.strip() for gap in gaps) and spans[-1][1] == len(text)


def test_baselines():
    sentences = split_sentences(DOCUMENT)
    assert len(sentences) == 6
    assert lead_k(DOCUMENT, 2) == " ".join(sentences[:2])
    assert lead_k(DOCUMENT, 99) == " ".join(sentences)
    drawn = random_sentences(DOCUMENT, 3, 0)
    assert drawn == random_sentences(DOCUMENT, 3, 0)
    picked = split_sentences(drawn)
    assert len(picked) == 3 and all(s in sentences for s in picked)
    assert [sentences.index(s) for s in picked] == sorted(sentences.index(s) for s in picked)
    assert len({random_sentences(DOCUMENT, 3, seed) for seed in range(20)}) > 1
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        lead_k(DOCUMENT, 0)
    examples = [
        {"document": DOCUMENT, "summary": "Sorting lists and dictionaries in Python."},
        {"document": ASCII_TEXT, "summary": "A fox jumps over a dog."},
    ]
    scores = baseline_rouge(examples, k=2, seed=0)
    assert set(scores) == {"lead_2", "random_2"}
    for values in scores.values():
        assert all(0 <= v <= 1 for v in values.values())
    # With k beyond every document's length both baselines return whole documents.
    whole = baseline_rouge(examples, k=50)
    assert whole["lead_50"] == whole["random_50"]


# ---------------------------------------------------------------------------
# Gap sentences.


def test_principal_scores_match_rouge_score():
    sentences = split_sentences(DOCUMENT)
    scorer = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)
    scores = principal_scores(sentences)
    for i, sentence in enumerate(sentences):
        rest = " ".join(sentences[:i] + sentences[i + 1 :])
        assert scores[i] == pytest.approx(scorer.score(rest, sentence)["rouge1"].fmeasure)
    best = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))[:2]
    assert choose_sentences(sentences, 2 / 6) == tuple(sorted(best))
    assert choose_sentences(sentences, 0.5, strategy="lead") == (0, 1, 2)
    assert choose_sentences(sentences, 0.01) == choose_sentences(sentences, 0.01)
    assert len(choose_sentences(sentences, 1.0, max_sentinels=4)) == 4


@pytest.mark.parametrize("strategy", ["principal", "random", "lead"])
def test_mask_document_round_trip(strategy, python_examples):
    documents = [DOCUMENT] + [e.document for e in python_examples[::97]]
    for seed, document in enumerate(documents):
        masked = mask_document(document, 0.3, strategy=strategy, seed=seed)
        n = len(split_sentences(document))
        assert len(masked.masked) == max(1, min(round(0.3 * n), n, 100))
        sentinels = re.findall(r"<extra_id_\d+>", masked.inputs)
        assert sentinels == [f"<extra_id_{k}>" for k in range(len(masked.masked))]
        assert re.findall(r"<extra_id_\d+>", masked.targets) == sentinels
        assert unmask_document(masked.inputs, masked.targets) == document
    with pytest.raises(ValueError, match="document must not contain sentinel"):
        mask_document("A sentence. <extra_id_0> Another one.")


def test_mask_ids_round_trip():
    sentences = [[10, 11], [12], [13, 14, 15], [16]]
    inputs, targets = mask_sentence_ids(sentences, [1, 3], [3, 4])
    assert inputs == [10, 11, 3, 13, 14, 15, 4]
    assert targets == [3, 12, 4, 16]
    assert unmask_ids(inputs, targets, [3, 4]) == [10, 11, 12, 13, 14, 15, 16]
    with pytest.raises(ValueError, match="sentinel_ids must hold at least 2"):
        mask_sentence_ids(sentences, [1, 3], [3])


def test_gap_sentence_transform(tokenizer, python_examples):
    transform = GapSentenceTransform(tokenizer, 128, 48, ratio=0.3)
    document = python_examples[5].document
    out = transform({"document": document})
    assert out["inputs"].shape == (128,) and out["targets"].shape == (48,)
    inputs = out["inputs"][out["inputs_mask"]].tolist()
    targets = out["targets"][out["targets_mask"]].tolist()
    assert inputs[-1] == EOS_ID and targets[-1] == EOS_ID
    assert targets[0] == tokenizer.sentinel_ids[0]
    restored = unmask_ids(inputs[:-1], targets[:-1], tokenizer.sentinel_ids)
    sentence_ids = [tokenizer.encode(s) for s in split_sentences(document)]
    kept = [i for s in sentence_ids for i in s][: len(restored)]
    assert restored == kept and len(restored) <= 127
    random_transform = GapSentenceTransform(tokenizer, 128, 48, strategy="random", seed=1)
    first = random_transform({"document": document})
    again = random_transform({"document": document})
    assert all((first[k] == again[k]).all() for k in first)
    with pytest.raises(ValueError, match="tokenizer must have sentinel ids"):
        GapSentenceTransform(object(), 128, 48)
