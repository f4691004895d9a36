"""Lexical diversity of a set of texts: distinct-n and Self-BLEU.

- distinct-n (Li et al. 2016): distinct n-grams / all n-grams, over the whole set.
- Self-BLEU (Zhu et al. 2018): the mean over texts of the sentence BLEU of each text
  against all the others as references; high means the texts repeat each other.

Sentence BLEU here is Papineni et al.'s clipped n-gram precisions up to ``max_order`` and
brevity penalty against the closest reference length (ties: the shorter), with the
sentence-level conventions of ``sacrebleu.sentence_bleu``: orders for which the text has
no n-gram are left out of the geometric mean, a text without a single matching unigram
scores 0, and zero precisions are smoothed (Chen & Cherry 2014) by ``"exp"`` (method 3:
``1 / (2^j * total)`` for the j-th zero order), ``"floor"`` (method 1: ``0.1 / total``,
as in Texygen's Self-BLEU) or not at all (``"none"``). Scores are in ``[0, 1]``.
Tokens are whitespace-separated words unless ``tokenize`` says otherwise.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Callable, Sequence

from tqdm.auto import tqdm

SMOOTHING = ("exp", "floor", "none")
FLOOR = 0.1


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    """Counts of the n-grams (tuples of ``n`` tokens) of one token sequence."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def distinct_n(
    texts: Sequence[str], n: int, tokenize: Callable[[str], list[str]] = str.split
) -> float:
    """Distinct n-grams over all n-grams in ``texts``; NaN when no text has ``n`` tokens."""
    if n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n}")
    counts = Counter()
    for text in texts:
        counts.update(ngrams(tokenize(text), n))
    total = sum(counts.values())
    return len(counts) / total if total else math.nan


def _closest_other_length(length: int, sorted_lengths: list[int]) -> int:
    """Reference length closest to ``length`` (ties: the shorter) among ``sorted_lengths``
    with one occurrence of ``length`` (the hypothesis itself) removed."""
    lo = bisect.bisect_left(sorted_lengths, length)
    hi = bisect.bisect_right(sorted_lengths, length)
    if hi - lo >= 2:
        return length
    below = sorted_lengths[lo - 1] if lo > 0 else None
    above = sorted_lengths[hi] if hi < len(sorted_lengths) else None
    if above is None or (below is not None and length - below <= above - length):
        return below
    return above


def sentence_bleu_from_counts(
    matches: Sequence[int],
    totals: Sequence[int],
    length: int,
    reference_length: int,
    smoothing: str = "exp",
) -> float:
    """Sentence BLEU in ``[0, 1]`` from the clipped n-gram ``matches`` and hypothesis n-gram
    ``totals`` of orders 1..max_order, with the conventions of the module docstring."""
    if not any(matches):
        return 0.0
    log_precisions, zero_orders = [], 0
    for match, total in zip(matches, totals, strict=True):
        if total == 0:
            break
        if match:
            log_precisions.append(math.log(match / total))
        elif smoothing == "exp":
            zero_orders += 1
            log_precisions.append(-math.log(2**zero_orders * total))
        elif smoothing == "floor":
            log_precisions.append(math.log(FLOOR / total))
        else:
            return 0.0
    penalty = 1.0 if length >= reference_length else math.exp(1 - reference_length / length)
    return penalty * math.exp(sum(log_precisions) / len(log_precisions))


def self_bleu(
    texts: Sequence[str],
    max_order: int = 4,
    smoothing: str = "exp",
    tokenize: Callable[[str], list[str]] = str.split,
    progress: bool = False,
) -> float:
    """Mean sentence BLEU of each text against all the other texts.

    Linear in the total number of n-grams: the clipping count of an n-gram against "all
    texts but i" is the largest count over all texts, or the second largest when text i
    holds the largest.
    """
    if len(texts) < 2:
        raise ValueError(f"texts must hold at least 2 texts for Self-BLEU, got {len(texts)}")
    if max_order < 1:
        raise ValueError(f"max_order must be an integer >= 1, got {max_order}")
    if smoothing not in SMOOTHING:
        raise ValueError(f"smoothing must be one of {SMOOTHING}, got {smoothing!r}")
    tokens = [tokenize(text) for text in texts]
    counts = [
        [ngrams(words, n) for n in range(1, max_order + 1)]
        for words in tqdm(tokens, desc="n-grams", disable=not progress)
    ]
    # n-gram -> (largest count, text holding it, second largest count)
    top_two: dict[tuple[str, ...], tuple[int, int, int]] = {}
    for i, per_order in enumerate(counts):
        for order_counts in per_order:
            for gram, c in order_counts.items():
                first, holder, second = top_two.get(gram, (0, -1, 0))
                if c > first:
                    top_two[gram] = (c, i, first)
                elif c > second:
                    top_two[gram] = (first, holder, c)
    sorted_lengths = sorted(len(words) for words in tokens)
    scores = []
    for i, per_order in enumerate(tqdm(counts, desc="Self-BLEU", disable=not progress)):
        matches, totals = [], []
        for order_counts in per_order:
            matched = 0
            for gram, c in order_counts.items():
                first, holder, second = top_two[gram]
                matched += min(c, second if holder == i else first)
            matches.append(matched)
            totals.append(sum(order_counts.values()))
        length = len(tokens[i])
        reference_length = _closest_other_length(length, sorted_lengths)
        scores.append(
            sentence_bleu_from_counts(matches, totals, length, reference_length, smoothing)
        )
    return sum(scores) / len(scores)
