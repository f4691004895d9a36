"""Faithfulness of generated texts to their input records, measured exactly.

- :func:`value_scores`: every value an output mentions (:func:`extract_values` of the
  task's closed vocabularies) is checked against its record. Hallucination rate =
  mentioned values absent from the record / mentioned values (distinct values per
  output, pooled over the corpus); hallucinated outputs = the share of outputs with at
  least one; omission rate = record values not mentioned / record values.
- :func:`parent_scores`: PARENT (Dhingra et al., 2019) with the word-overlap entailment
  model, against the record and the reference. An output n-gram ``g`` counts as correct
  with probability ``Pr(g in reference) + (1 - Pr(g in reference)) w(g)``, ``w(g)`` the
  share of its tokens found among the record's value tokens; precision is the geometric
  mean over ``n = 1..4``. Recall = ``R_ref^(1 - lambda) R_table^lambda`` (``lambda = 0.5``):
  ``R_ref`` the recall of the reference's n-grams weighted by their ``w``, ``R_table`` the
  mean over record values of ``LCS(value, output) / |value|`` (tokens). Tokens: lower
  case runs of ``[a-z0-9]``. Called "PARENT-style" in reports: the entailment model and
  ``lambda`` are fixed as above, and only the record's values (not its labels) form the
  table.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from seq_models.data_to_text import extract_values

PARENT_MAX_ORDER = 4
PARENT_LAMBDA = 0.5
_TOKEN = re.compile(r"[a-z0-9]+")
_EPSILON = 1e-5  # floor of a zero n-gram precision or recall before the geometric mean


def _check_parallel(**lists: Sequence) -> int:
    sizes = {name: len(value) for name, value in lists.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"inputs must have the same length, got {sizes}")
    if not next(iter(sizes.values())):
        raise ValueError("inputs must not be empty")
    return next(iter(sizes.values()))


def value_scores(outputs: Sequence[str], record_values: Sequence[Sequence[str]]) -> dict:
    """Hallucination rate, hallucinated outputs and omission rate (see the module doc).

    Args:
      outputs: generated texts.
      record_values: for each output, the values of its record.

    Returns:
      ``{"hallucination_rate", "hallucinated_outputs", "omission_rate",
      "mentioned_values"}`` (the last: mean distinct values mentioned per output).
    """
    count = _check_parallel(outputs=outputs, record_values=record_values)
    mentioned = hallucinated = with_hallucination = missing = total = 0
    for text, values in zip(outputs, record_values, strict=True):
        found, record = set(extract_values(text)), set(values)
        wrong = found - record
        mentioned += len(found)
        hallucinated += len(wrong)
        with_hallucination += bool(wrong)
        missing += len(record - found)
        total += len(record)
    return {
        "hallucination_rate": hallucinated / mentioned if mentioned else 0.0,
        "hallucinated_outputs": with_hallucination / count,
        "omission_rate": missing / total if total else 0.0,
        "mentioned_values": mentioned / count,
    }


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        previous = 0
        for j, y in enumerate(b):
            previous, row[j + 1] = row[j + 1], previous + 1 if x == y else max(row[j + 1], row[j])
    return row[-1]


def _geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(max(v, _EPSILON)) for v in values) / len(values))


def parent_one(output: str, reference: str, table_values: Sequence[str]) -> tuple[float, float]:
    """PARENT-style ``(precision, recall)`` of one output (see the module doc)."""
    out, ref = _tokens(output), _tokens(reference)
    values = [_tokens(v) for v in table_values if _tokens(v)]
    table = {t for v in values for t in v}

    def entailed(gram: tuple[str, ...]) -> float:
        return sum(t in table for t in gram) / len(gram)

    precisions, recalls = [], []
    for n in range(1, PARENT_MAX_ORDER + 1):
        out_grams, ref_grams = _ngrams(out, n), _ngrams(ref, n)
        if out_grams:
            correct = 0.0
            for gram, c in out_grams.items():
                in_ref = min(1.0, ref_grams[gram] / c)
                correct += c * (in_ref + (1.0 - in_ref) * entailed(gram))
            precisions.append(correct / sum(out_grams.values()))
        weight = sum(c * entailed(g) for g, c in ref_grams.items())
        if weight > 0:
            hit = sum(c * entailed(g) * min(1.0, out_grams[g] / c) for g, c in ref_grams.items())
            recalls.append(hit / weight)
    precision = _geometric_mean(precisions) if precisions else 0.0
    ref_recall = _geometric_mean(recalls) if recalls else 1.0
    table_recall = float(np.mean([_lcs(v, out) / len(v) for v in values])) if values else 1.0
    recall = ref_recall ** (1 - PARENT_LAMBDA) * max(table_recall, _EPSILON) ** PARENT_LAMBDA
    return precision, recall


def parent_scores(
    outputs: Sequence[str], references: Sequence[str], record_values: Sequence[Sequence[str]]
) -> dict:
    """Corpus means of the PARENT-style precision, recall and F1 of each output."""
    _check_parallel(outputs=outputs, references=references, record_values=record_values)
    scores = [
        parent_one(o, r, v) for o, r, v in zip(outputs, references, record_values, strict=True)
    ]
    p = np.array([s[0] for s in scores])
    r = np.array([s[1] for s in scores])
    f = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
    return {"parent_precision": p.mean(), "parent_recall": r.mean(), "parent_f1": f.mean()}
