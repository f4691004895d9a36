"""ROUGE-1/2/L through the ``rouge-score`` package, sentence splitting and extractive baselines.

``rouge(predictions, references)`` is the mean over the corpus of the per-example
F-measures of ROUGE-1, ROUGE-2 and ROUGE-L (longest common subsequence over the
whole text, not the per-sentence ROUGE-Lsum), with ``rouge-score``'s tokenisation:
lower case, every run of characters other than ``a-z0-9`` a separator, and the Porter
stemmer on words longer than 3 characters. Scores are in ``[0, 1]``.

Sentences (``sentence_spans``): a blank line always ends a sentence; inside a
paragraph, a sentence ends after ``.``, ``!`` or ``?`` (and any closing quotes or
brackets) followed by whitespace and then an upper-case letter, a digit, an opening
quote, bracket or backtick, except after ``e.g.`` and ``i.e.``. Sentences are the
non-whitespace stretches between these ends, so the text between two consecutive
sentences is whitespace only.

Baselines: ``lead_k`` (the first ``k`` sentences) and ``random_sentences`` (``k``
sentences drawn uniformly without replacement, kept in document order), both joined
by single spaces; ``baseline_rouge`` scores both on a split.
"""

from __future__ import annotations

import functools
import numbers
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "ROUGE_TYPES",
    "baseline_rouge",
    "lead_k",
    "random_sentences",
    "rouge",
    "rouge_per_example",
    "sentence_spans",
    "split_sentences",
]

ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")

_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s+[A-Z0-9\"'(\[`*])")
_NO_END_AFTER = re.compile(r"(?:\be\.g|\bi\.e)\.$", re.IGNORECASE)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


@functools.lru_cache(maxsize=1)
def _scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def _check_texts(texts: Any, name: str) -> list[str]:
    if isinstance(texts, str):
        raise ValueError(f"{name} must be a sequence of strings, got a single string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{name} must hold strings, got {type(text).__name__} at index {i}")
    return texts


def rouge_per_example(
    predictions: Sequence[str], references: Sequence[str]
) -> dict[str, np.ndarray]:
    """ROUGE F-measures of every (prediction, reference) pair.

    Args:
      predictions: generated summaries.
      references: reference summaries, as many as ``predictions`` (at least one).

    Returns:
      ``{"rouge1": f64[n], "rouge2": f64[n], "rougeL": f64[n]}``.
    """
    predictions = _check_texts(predictions, "predictions")
    references = _check_texts(references, "references")
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references must have the same length, got {len(predictions)} "
            f"and {len(references)}"
        )
    if not predictions:
        raise ValueError("predictions must hold at least one summary, got none")
    scorer = _scorer()
    scores = {name: np.empty(len(predictions)) for name in ROUGE_TYPES}
    for i, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
        result = scorer.score(reference, prediction)
        for name in ROUGE_TYPES:
            scores[name][i] = result[name].fmeasure
    return scores


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus ROUGE: the mean F-measure of every type over the pairs.

    Returns:
      ``{"rouge1": float, "rouge2": float, "rougeL": float}`` in ``[0, 1]``.
    """
    return {name: float(v.mean()) for name, v in rouge_per_example(predictions, references).items()}


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``[(start, end), ...]``: the sentences of ``text`` as ``text[start:end]``, in order
    (see the module docstring)."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    spans = []
    paragraph_start = 0
    for paragraph_end in [m.start() for m in _PARAGRAPH_BREAK.finditer(text)] + [len(text)]:
        start = paragraph_start
        paragraph = text[paragraph_start:paragraph_end]
        for match in _SENTENCE_END.finditer(paragraph):
            end = paragraph_start + match.end()
            if _NO_END_AFTER.search(text[start:end]):
                continue
            spans.append((start, end))
            start = end
        spans.append((start, paragraph_end))
        paragraph_start = paragraph_end
    trimmed = []
    for start, end in spans:
        piece = text[start:end]
        stripped = piece.strip()
        if stripped:
            offset = start + len(piece) - len(piece.lstrip())
            trimmed.append((offset, offset + len(stripped)))
    return trimmed


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (see ``sentence_spans``)."""
    return [text[start:end] for start, end in sentence_spans(text)]


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


def _sentences_of(document: Any) -> list[str]:
    if not isinstance(document, str):
        raise ValueError(f"document must be a str, got {type(document).__name__}")
    sentences = split_sentences(document)
    if not sentences:
        raise ValueError(f"document must hold at least one sentence, got {document[:80]!r}")
    return sentences


def lead_k(document: str, k: int) -> str:
    """The first ``k`` sentences of ``document`` (all of them if it has fewer)."""
    k = _check_k(k)
    return " ".join(_sentences_of(document)[:k])


def _rng(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0 or a numpy Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def random_sentences(document: str, k: int, seed: int | np.random.Generator) -> str:
    """``k`` sentences of ``document`` drawn uniformly without replacement (all of
    them if it has fewer), in document order.

    Args:
      document: the text.
      k: sentences to draw, ``>= 1``.
      seed: an integer ``>= 0`` or a ``numpy.random.Generator`` (advanced in place).
    """
    k = _check_k(k)
    sentences = _sentences_of(document)
    chosen = _rng(seed).choice(len(sentences), size=min(k, len(sentences)), replace=False)
    return " ".join(sentences[i] for i in sorted(chosen))


def baseline_rouge(
    examples: Sequence[Any], *, k: int = 3, seed: int = 0
) -> dict[str, dict[str, float]]:
    """ROUGE of the lead-``k`` and random-``k`` baselines on a split.

    Args:
      examples: ``{"document": str, "summary": str}`` items (e.g. a split of
        ``seq_models.summarization.load_summarization``), at least one.
      k: sentences per baseline summary.
      seed: example ``i``'s random sentences use ``numpy.random.default_rng([seed, i])``.

    Returns:
      ``{f"lead_{k}": rouge(...), f"random_{k}": rouge(...)}``.
    """
    k = _check_k(k)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    documents, references = [], []
    for i in range(len(examples)):
        example = examples[i]
        documents.append(example["document"])
        references.append(example["summary"])
    if not documents:
        raise ValueError("examples must hold at least one example, got none")
    lead = [lead_k(d, k) for d in documents]
    drawn = [
        random_sentences(d, k, np.random.default_rng([int(seed), i]))
        for i, d in enumerate(documents)
    ]
    return {f"lead_{k}": rouge(lead, references), f"random_{k}": rouge(drawn, references)}
