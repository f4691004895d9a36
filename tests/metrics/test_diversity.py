"""distinct-n and Self-BLEU on hand-worked examples, and Self-BLEU against sacrebleu."""

import math
import random

import pytest

from metrics.diversity import distinct_n, self_bleu, sentence_bleu_from_counts


def test_distinct_n_by_hand():
    texts = ["the cat sat", "the cat ran"]
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)  # the, cat, sat, ran of 6
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)  # "the cat" twice
    assert distinct_n(texts, 3) == 1.0
    assert math.isnan(distinct_n(texts, 4))
    assert distinct_n(["a-b a_b"], 1, tokenize=lambda t: t.replace("_", "-").split()) == 0.5
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        distinct_n(texts, 0)


def test_self_bleu_by_hand():
    # Identical texts reproduce each other: BLEU 1.
    assert self_bleu(["a b c d e"] * 3) == pytest.approx(1.0)
    # No shared word: no unigram match, BLEU 0 whatever the smoothing.
    assert self_bleu(["a b c d", "e f g h"]) == 0.0
    # "a b c d" against "a b c e" (and the reverse): precisions 3/4, 2/3, 1/2 and a zero
    # 4-gram order; equal lengths, no brevity penalty. exp smoothing gives the zero order
    # 1 / (2 * 1); floor gives 0.1 / 1.
    common = 3 / 4 * 2 / 3 * 1 / 2
    texts = ["a b c d", "a b c e"]
    assert self_bleu(texts, smoothing="exp") == pytest.approx((common / 2) ** 0.25)
    assert self_bleu(texts, smoothing="floor") == pytest.approx((common * 0.1) ** 0.25)
    assert self_bleu(texts, smoothing="none") == 0.0
    assert self_bleu(texts, max_order=2) == pytest.approx((3 / 4 * 2 / 3) ** 0.5)


def test_brevity_penalty_and_effective_order():
    # A 2-token text against a 4-token reference: penalty exp(1 - 4/2); orders 3 and 4 have
    # no n-gram in the text and are left out.
    assert sentence_bleu_from_counts([2, 1, 0, 0], [2, 1, 0, 0], 2, 4) == pytest.approx(
        math.exp(1 - 2)
    )


def test_self_bleu_errors():
    with pytest.raises(ValueError, match="at least 2 texts"):
        self_bleu(["only one"])
    with pytest.raises(ValueError, match="smoothing must be one of"):
        self_bleu(["a", "b"], smoothing="add-k")


def test_self_bleu_matches_sacrebleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    rng = random.Random(0)
    vocab = ["a", "b", "c", "d", "e", "f", "g"]
    for _ in range(20):
        texts = [
            " ".join(rng.choices(vocab, k=rng.randint(0, 9))) for _ in range(rng.randint(2, 7))
        ]
        for smoothing in ("exp", "floor", "none"):
            want = sum(
                sacrebleu.sentence_bleu(
                    text, texts[:i] + texts[i + 1 :], smooth_method=smoothing, tokenize="none"
                ).score
                for i, text in enumerate(texts)
            ) / (100 * len(texts))
            assert self_bleu(texts, smoothing=smoothing) == pytest.approx(want, abs=1e-12)
