"""Gap-sentence generation: the PEGASUS pretraining objective, with T5 sentinels.

A document is split into sentences (``seq_models.rouge.sentence_spans``); a share
``ratio`` of them, ``m = clip(round(ratio * n), 1, n)`` of ``n`` (at most the number
of sentinels), is chosen and each chosen sentence is replaced, in the input, by a
sentinel: the ``k``-th chosen sentence in document order by ``<extra_id_k>``. The
target lists the chosen sentences in document order, each after its sentinel::

    document: "A b. C d. E f."       (chosen: the second sentence)
    inputs:   "A b. <extra_id_0> E f."
    targets:  "<extra_id_0> C d."

Choice (``strategy``):

- ``"principal"`` (PEGASUS "Ind-Orig"): the ``m`` sentences with the highest ROUGE-1
  F-measure against the rest of the document, each scored independently (ties go to
  the earlier sentence); deterministic;
- ``"random"``: ``m`` sentences uniformly without replacement (seeded);
- ``"lead"``: the first ``m`` sentences.

Two forms:

- text (``mask_document`` / ``unmask_document``): ROUGE-1 over ``rouge-score``'s
  stemmed words; the sentinels are the strings ``<extra_id_k>``, which a tokenizer of
  ``seq_models.tokenizer`` encodes to its sentinel ids;
- token ids (``mask_sentence_ids`` / ``unmask_ids``, ``choose_sentences`` on id
  sequences): the sentences are given as id sequences, ROUGE-1 is computed over the
  ids, and the sentinels are the given sentinel ids.

``unmask_document(inputs, targets)`` (``unmask_ids``) puts the sentences back: it
returns the original document (ids) exactly.

``GapSentenceTransform`` turns ``{"document": str}`` into the fixed-length arrays of a
pretraining batch. Everything here is pure Python and numpy.
"""

from __future__ import annotations

import collections
import functools
import numbers
import re
import zlib
from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple

import numpy as np

from seq_models.rouge import sentence_spans
from seq_models.tokenizer import fit_to_length, sentinel_piece

__all__ = [
    "STRATEGIES",
    "GapSentenceTransform",
    "MaskedDocument",
    "choose_sentences",
    "mask_document",
    "mask_sentence_ids",
    "principal_scores",
    "unmask_document",
    "unmask_ids",
]

STRATEGIES: tuple[str, ...] = ("principal", "random", "lead")
DEFAULT_RATIO = 0.3
DEFAULT_MAX_SENTINELS = 100

_SENTINEL = re.compile(r"<extra_id_(\d+)>")


class MaskedDocument(NamedTuple):
    """A masked document.

    Attributes:
      inputs: the document with every chosen sentence replaced by its sentinel.
      targets: ``"<extra_id_0> sentence <extra_id_1> sentence ..."``.
      masked: indices of the chosen sentences, increasing.
    """

    inputs: str
    targets: str
    masked: tuple[int, ...]


@functools.lru_cache(maxsize=1)
def _word_tokenizer() -> Any:
    from rouge_score import tokenizers

    return tokenizers.DefaultTokenizer(use_stemmer=True)


def _units(sentence: str | Sequence[int]) -> list[Hashable]:
    if isinstance(sentence, str):
        return _word_tokenizer().tokenize(sentence)
    return [int(i) for i in sentence]


def principal_scores(sentences: Sequence[str] | Sequence[Sequence[int]]) -> np.ndarray:
    """ROUGE-1 F-measure of every sentence against all the others: ``f64[n]``.

    Sentences are strings (``rouge-score``'s stemmed words) or id sequences (the ids).
    """
    units = [collections.Counter(_units(s)) for s in sentences]
    total = collections.Counter()
    for counts in units:
        total.update(counts)
    total_count = sum(total.values())
    scores = np.zeros(len(units))
    for i, counts in enumerate(units):
        count = sum(counts.values())
        rest = total_count - count
        overlap = sum(min(c, total[w] - c) for w, c in counts.items())
        if overlap:
            precision, recall = overlap / max(count, 1), overlap / max(rest, 1)
            scores[i] = 2 * precision * recall / (precision + recall)
    return scores


def _check_strategy(strategy: Any) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    return strategy


def _check_ratio(ratio: Any) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 < ratio <= 1:
        raise ValueError(f"ratio must be a number in (0, 1], got {ratio!r}")
    return float(ratio)


def _rng(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0 or a numpy Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def _ranking(
    sentences: Sequence[str] | Sequence[Sequence[int]], strategy: str, seed: Any
) -> list[int]:
    """Every sentence index, the most preferred first."""
    n = len(sentences)
    if strategy == "lead":
        return list(range(n))
    if strategy == "random":
        return [int(i) for i in _rng(seed).permutation(n)]
    scores = principal_scores(sentences)
    return sorted(range(n), key=lambda i: (-scores[i], i))


def _count(n: int, ratio: float, max_sentinels: int) -> int:
    return max(1, min(int(round(ratio * n)), n, max_sentinels))


def choose_sentences(
    sentences: Sequence[str] | Sequence[Sequence[int]],
    ratio: float = DEFAULT_RATIO,
    *,
    strategy: str = "principal",
    seed: int | np.random.Generator = 0,
    max_sentinels: int = DEFAULT_MAX_SENTINELS,
) -> tuple[int, ...]:
    """Indices of the sentences to mask, increasing.

    Args:
      sentences: at least one sentence, strings or id sequences.
      ratio: share of the sentences to mask, in ``(0, 1]``.
      strategy: one of ``STRATEGIES``.
      seed: an integer ``>= 0`` or a ``numpy.random.Generator``; used by ``"random"``.
      max_sentinels: at most this many sentences are chosen.
    """
    ratio = _check_ratio(ratio)
    strategy = _check_strategy(strategy)
    if (
        isinstance(max_sentinels, bool)
        or not isinstance(max_sentinels, numbers.Integral)
        or (max_sentinels < 1)
    ):
        raise ValueError(f"max_sentinels must be an integer >= 1, got {max_sentinels!r}")
    if len(sentences) == 0:
        raise ValueError("sentences must hold at least one sentence, got none")
    m = _count(len(sentences), ratio, int(max_sentinels))
    return tuple(sorted(_ranking(sentences, strategy, seed)[:m]))


def mask_document(
    document: str,
    ratio: float = DEFAULT_RATIO,
    *,
    strategy: str = "principal",
    seed: int | np.random.Generator = 0,
    max_sentinels: int = DEFAULT_MAX_SENTINELS,
) -> MaskedDocument:
    """Mask sentences of a text document (see the module docstring).

    Args:
      document: text with at least one sentence and no ``<extra_id_k>`` in it.
      ratio, strategy, seed, max_sentinels: see ``choose_sentences``.
    """
    if not isinstance(document, str):
        raise ValueError(f"document must be a str, got {type(document).__name__}")
    if _SENTINEL.search(document):
        raise ValueError(
            f"document must not contain sentinel text <extra_id_k>, got "
            f"{_SENTINEL.search(document).group(0)!r} in it"
        )
    spans = sentence_spans(document)
    if not spans:
        raise ValueError(f"document must hold at least one sentence, got {document[:80]!r}")
    sentences = [document[s:e] for s, e in spans]
    masked = choose_sentences(
        sentences, ratio, strategy=strategy, seed=seed, max_sentinels=max_sentinels
    )
    pieces, targets, position = [], [], 0
    for k, i in enumerate(masked):
        start, end = spans[i]
        pieces += [document[position:start], sentinel_piece(k)]
        targets += [sentinel_piece(k), sentences[i]]
        position = end
    pieces.append(document[position:])
    return MaskedDocument("".join(pieces), " ".join(targets), masked)


def unmask_document(inputs: str, targets: str) -> str:
    """The document that ``mask_document`` masked into ``inputs`` and ``targets``."""
    parts = _SENTINEL.split(targets)
    if parts[0].strip():
        raise ValueError(f"targets must start with a sentinel <extra_id_k>, got {targets[:80]!r}")
    sentences = {int(parts[j]): parts[j + 1].strip() for j in range(1, len(parts), 2)}

    def fill(match: re.Match) -> str:
        k = int(match.group(1))
        if k not in sentences:
            raise ValueError(f"targets must hold every sentinel of inputs, got no <extra_id_{k}>")
        return sentences[k]

    return _SENTINEL.sub(fill, inputs)


def _check_sentinel_ids(sentinel_ids: Sequence[int], needed: int) -> list[int]:
    ids = [int(i) for i in sentinel_ids]
    if len(ids) < needed:
        raise ValueError(
            f"sentinel_ids must hold at least {needed} ids (one per masked sentence), "
            f"got {len(ids)}"
        )
    return ids


def mask_sentence_ids(
    sentences: Sequence[Sequence[int]], masked: Sequence[int], sentinel_ids: Sequence[int]
) -> tuple[list[int], list[int]]:
    """Mask sentences given as token ids.

    Args:
      sentences: the document's sentences, each a sequence of ids (none a sentinel).
      masked: indices of the sentences to mask (e.g. from ``choose_sentences``).
      sentinel_ids: the ids of ``<extra_id_0>``, ``<extra_id_1>``, ... (e.g.
        ``Tokenizer.sentinel_ids``).

    Returns:
      ``(inputs, targets)``: the concatenated sentences with the ``k``-th masked one
      (in document order) replaced by ``sentinel_ids[k]``; and ``[sentinel_ids[0],
      *sentence, sentinel_ids[1], *sentence, ...]``. No EOS is added.
    """
    masked = sorted({int(i) for i in masked})
    if masked and not 0 <= masked[0] <= masked[-1] < len(sentences):
        raise ValueError(
            f"masked must hold sentence indices in [0, {len(sentences)}), got {masked}"
        )
    ids = _check_sentinel_ids(sentinel_ids, len(masked))
    reserved = set(ids)
    inputs: list[int] = []
    targets: list[int] = []
    slot = {i: k for k, i in enumerate(masked)}
    for i, sentence in enumerate(sentences):
        sentence = [int(t) for t in sentence]
        if reserved.intersection(sentence):
            raise ValueError(f"sentences must not contain sentinel ids, got one in sentence {i}")
        if i in slot:
            inputs.append(ids[slot[i]])
            targets += [ids[slot[i]], *sentence]
        else:
            inputs += sentence
    return inputs, targets


def unmask_ids(
    inputs: Sequence[int], targets: Sequence[int], sentinel_ids: Sequence[int]
) -> list[int]:
    """The ids that ``mask_sentence_ids`` masked into ``inputs`` and ``targets``."""
    slot = {int(i): k for k, i in enumerate(sentinel_ids)}
    targets = [int(t) for t in targets]
    if targets and targets[0] not in slot:
        raise ValueError(f"targets must start with a sentinel id, got {targets[0]}")
    pieces: dict[int, list[int]] = {}
    current = None
    for t in targets:
        if t in slot:
            current = slot[t]
            pieces[current] = []
        else:
            pieces[current].append(t)
    document: list[int] = []
    for t in (int(i) for i in inputs):
        if t in slot:
            if slot[t] not in pieces:
                raise ValueError(f"targets must hold every sentinel of inputs, got no {t}")
            document += pieces[slot[t]]
        else:
            document.append(t)
    return document


class GapSentenceTransform:
    """``{"document": str}`` -> a gap-sentence pretraining example of fixed length.

    The document is split into sentences and each is encoded separately (sentinel
    ids that the text itself encodes to are dropped); ``"principal"`` scores the
    sentences by ROUGE-1 over their ids. The leading
    sentences that fit in ``input_length - 1`` ids are kept (the first one truncated
    if it alone is longer); sentences are taken by ``strategy``'s preference, up to
    ``clip(round(ratio * n), 1, n)`` of the ``n`` kept ones and the tokenizer's
    sentinels, skipping any whose ``[sentinel, *ids]`` no longer fits in the
    ``target_length - 1`` target ids. The EOS is appended to both sides (which
    therefore always fit), then padding. ``"random"`` draws with
    ``numpy.random.default_rng([seed, crc32(document)])``: the same document is
    always masked the same way.

    Returns (per example):
      ``{"inputs": int32[input_length], "inputs_mask": bool[input_length],
      "targets": int32[target_length], "targets_mask": bool[target_length]}``; masks
      are true on real ids (the EOS included).

    Args:
      tokenizer: a ``seq_models.tokenizer.Tokenizer`` with sentinels.
      input_length, target_length: fixed lengths, ``>= 2``.
      ratio, strategy: see ``choose_sentences``.
      seed: integer ``>= 0``.
    """

    def __init__(
        self,
        tokenizer: Any,
        input_length: int,
        target_length: int,
        *,
        ratio: float = DEFAULT_RATIO,
        strategy: str = "principal",
        seed: int = 0,
    ):
        for name, value in (("input_length", input_length), ("target_length", target_length)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 2:
                raise ValueError(f"{name} must be an integer >= 2, got {value!r}")
        if not getattr(tokenizer, "sentinel_ids", ()):
            raise ValueError(
                f"tokenizer must have sentinel ids (<extra_id_k> pieces), got {tokenizer!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.tokenizer = tokenizer
        self.input_length, self.target_length = int(input_length), int(target_length)
        self.ratio = _check_ratio(ratio)
        self.strategy = _check_strategy(strategy)
        self.seed = int(seed)

    def __call__(self, example: dict[str, Any]) -> dict[str, np.ndarray]:
        document = example["document"]
        if isinstance(document, bytes | np.bytes_):
            document = document.decode("utf-8")
        tokenizer = self.tokenizer
        sentences = []
        budget = self.input_length - 1
        reserved = set(tokenizer.sentinel_ids)
        for start, end in sentence_spans(document):
            ids = [i for i in tokenizer.encode(document[start:end]) if i not in reserved]
            if not ids:
                continue
            if not sentences and len(ids) > budget:
                ids = ids[:budget]
            if len(ids) > budget:
                break
            sentences.append(ids)
            budget -= len(ids)
        if not sentences:
            raise ValueError(f"example['document'] must hold some text, got {document[:80]!r}")
        m = _count(len(sentences), self.ratio, tokenizer.num_sentinels)
        rng = np.random.default_rng([self.seed, zlib.crc32(document.encode("utf-8"))])
        budget = self.target_length - 1
        masked = []
        for i in _ranking(sentences, self.strategy, rng):
            if len(masked) == m:
                break
            if 1 + len(sentences[i]) <= budget:
                masked.append(i)
                budget -= 1 + len(sentences[i])
        inputs, targets = mask_sentence_ids(sentences, masked, tokenizer.sentinel_ids)
        inputs, inputs_mask = fit_to_length(
            inputs, self.input_length, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id
        )
        targets, targets_mask = fit_to_length(
            targets, self.target_length, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id
        )
        return {
            "inputs": inputs,
            "inputs_mask": inputs_mask,
            "targets": targets,
            "targets_mask": targets_mask,
        }
