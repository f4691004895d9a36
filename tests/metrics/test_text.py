"""The text pipeline (with the model-free hashed embedding), text files and the command."""

import json

import jax
import numpy as np
import pytest

from metrics.__main__ import main
from metrics.embeddings import embedder, hashed_ngram_embedder
from metrics.text import embed_texts, text_precision_recall
from metrics.text_files import read_texts

SUBJECTS = ["the cat", "a dog", "my neighbour", "the old sailor", "a small child", "the robot"]
VERBS = ["watched", "painted", "ignored", "described", "carried", "followed", "repaired"]
OBJECTS = ["the river", "a red kite", "the broken clock", "an empty street", "the last train"]
ENDINGS = ["slowly", "at dawn", "without a word", "with great care", "in the rain", "for hours"]


def sentences(rng, n):
    parts = (SUBJECTS, VERBS, OBJECTS, ENDINGS)
    return [" ".join(p[rng.integers(len(p))] for p in parts) + "." for _ in range(n)]


@pytest.fixture(scope="module")
def corpora():
    rng = np.random.default_rng(0)
    human = sentences(rng, 240)
    collapsed = [human[i % 3] for i in range(200)]  # the model repeats three sentences
    return human, sentences(rng, 200), collapsed


def test_hashed_embedder_is_stateless_and_normalised():
    embed = hashed_ngram_embedder()
    first = embed(["the cat watched the river", "a dog"])
    assert first.shape == (2, 4096) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(embed(["a dog"])[0], first[1])


def test_embed_texts_batches_and_checks_shapes():
    embed = hashed_ngram_embedder(n_features=64)
    texts = [f"text number {i}" for i in range(11)]
    np.testing.assert_array_equal(embed_texts(texts, embed, 3, False), embed(texts))
    with pytest.raises(ValueError, match=r"one row per text, \[3, dim\], got shape \(3,\)"):
        embed_texts(texts, lambda batch: np.zeros(len(batch)), 3, False)


def test_text_pipeline_separates_quality_from_diversity(corpora):
    human, fresh, collapsed = corpora
    embed = hashed_ngram_embedder()
    key = jax.random.PRNGKey(0)
    same = text_precision_recall(human, fresh, embed, key=key, progress=False)
    with pytest.warns(UserWarning, match="zero k-NN radius"):
        mode_collapse = text_precision_recall(
            human, collapsed, embed, key=key, strict=False, progress=False
        )
    assert same.precision > 0.7 and same.recall > 0.7
    assert mode_collapse.precision == 1.0  # copies of human sentences
    assert mode_collapse.recall < 0.1  # three balls around three sentences
    assert len(same.reference_radii) == len(same.generated_radii) == 200  # truncated


def test_text_pipeline_needs_a_key_for_unequal_sets(corpora):
    human, fresh, _ = corpora
    with pytest.raises(ValueError, match="needs a jax.random key"):
        text_precision_recall(human, fresh, hashed_ngram_embedder(), progress=False)


def test_unknown_embedding():
    with pytest.raises(ValueError, match="embedding must be one of"):
        embedder("word2vec")


def test_read_texts(tmp_path):
    lines = tmp_path / "texts.txt"
    lines.write_text("first text\n\n  second, indented\n", encoding="utf-8")
    assert read_texts(lines) == ["first text", "  second, indented"]
    records = tmp_path / "texts.jsonl"
    records.write_text('{"text": "a"}\n{"text": "b", "id": 2}\n', encoding="utf-8")
    assert read_texts(records) == ["a", "b"]
    assert read_texts(records, "lines") == ['{"text": "a"}', '{"text": "b", "id": 2}']
    other = tmp_path / "other.jsonl"
    other.write_text('{"completion": "c"}\n', encoding="utf-8")
    assert read_texts(other, field="completion") == ["c"]
    with pytest.raises(ValueError, match=r"other.jsonl:1: expected an object with a string 'text'"):
        read_texts(other)
    other.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"other.jsonl:1: not a JSON line"):
        read_texts(other)
    lines.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no text"):
        read_texts(lines)


def test_command_prints_the_table_and_writes_json(corpora, tmp_path, capsys):
    human, fresh, _ = corpora
    reference, generated = tmp_path / "human.txt", tmp_path / "model.jsonl"
    reference.write_text("\n".join(human), encoding="utf-8")
    generated.write_text("\n".join(json.dumps({"text": t}) for t in fresh), encoding="utf-8")
    out = tmp_path / "pr.json"
    argv = ["pr", "--reference", str(reference), "--generated", str(generated)]
    argv += ["--embedding", "hashed-ngrams", "--no-progress", "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "hashed character 2-4-grams (lexical fallback" in printed
    assert "precision" in printed and "self-bleu" in printed
    results = json.loads(out.read_text())
    assert results["compared"] == {"reference": 200, "generated": 200}
    assert set(results["metrics"]) == {"precision", "recall", "density", "coverage"}
    assert len(results["realism"]) == 200
    # Same settings in-process: the command reports exactly what the pipeline computes.
    direct = text_precision_recall(
        human, fresh, hashed_ngram_embedder(), key=jax.random.PRNGKey(0), progress=False
    )
    assert results["metrics"] == direct.summary()
    assert results["diversity"]["generated"]["distinct-1"] > 0


def test_command_bootstrap_prints_and_writes_intervals(corpora, tmp_path, capsys):
    human, fresh, _ = corpora
    reference, generated = tmp_path / "human.txt", tmp_path / "model.txt"
    reference.write_text("\n".join(human), encoding="utf-8")
    generated.write_text("\n".join(fresh), encoding="utf-8")
    out = tmp_path / "pr.json"
    argv = ["pr", "--reference", str(reference), "--generated", str(generated), "--json", str(out)]
    argv += ["--embedding", "hashed-ngrams", "--no-progress", "--no-diversity"]
    assert main([*argv, "--bootstrap", "50", "--confidence", "0.9"]) == 0
    assert "bootstrap: 50 resamples, 90% percentile intervals" in capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results["settings"]["bootstrap"] == 50
    for name, value in results["metrics"].items():
        low, high = results["intervals"][name]
        assert low <= value <= high, name
    # The intervals come beside the metrics of the plain command, unchanged.
    assert main(argv) == 0
    assert json.loads(out.read_text())["metrics"] == results["metrics"]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["-k", "0"], "argument -k: k must be an integer >= 1, got 0"),
        (["--explained-variance", "1.5"], "explained_variance must be a finite number > 0"),
        (["--embedding", "bert"], "invalid choice: 'bert'"),
    ],
)
def test_bad_arguments_exit_with_a_message(extra, message, tmp_path, capsys):
    texts = tmp_path / "t.txt"
    texts.write_text("one\ntwo\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["pr", "--reference", str(texts), "--generated", str(texts), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_too_few_texts_and_missing_files_are_usage_errors(tmp_path, capsys):
    texts = tmp_path / "t.txt"
    texts.write_text("one\ntwo\n", encoding="utf-8")
    common = ["--embedding", "hashed-ngrams", "--no-progress", "--no-diversity"]
    with pytest.raises(SystemExit):
        main(["pr", "--reference", str(texts), "--generated", str(texts), *common])
    assert "reference needs at least k + 1 = 6 points, got 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pr", "--reference", str(tmp_path / "missing.txt"), "--generated", str(texts)])
    assert "No such file" in capsys.readouterr().err
    assert main([]) == 2
