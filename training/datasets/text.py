"""An offline word-level corpus: the Python documentation topics that ship with Python.

``pydoc_data.topics`` (the text behind ``help("if")``, ``help("class")``, ...: about
460 k characters, 120 k words of English reference prose with code) is part of the
standard library, so the language-model job needs no download. Topics are taken in
sorted order, and each is split: its first ``1 - valid_fraction`` of words go to the
training split, the rest to the validation split (so both splits cover every topic;
the topics differ a lot in style, from prose to tables of operators).

Tokens are lower-cased words, numbers and single punctuation marks; the vocabulary is
the ``vocab_size - 1`` most frequent training tokens (ties broken alphabetically) and
``<unk>`` (id 0) for the rest.
"""

from __future__ import annotations

import collections
import re
from typing import NamedTuple

import numpy as np

UNKNOWN = "<unk>"
_TOKEN = re.compile(r"[a-z]+|[0-9]+|[^\sa-z0-9]")


class Corpus(NamedTuple):
    """Token ids of the two splits and the vocabulary (``vocab[i]`` is token ``i``)."""

    vocab: tuple[str, ...]
    train: np.ndarray
    valid: np.ndarray


def tokenize(text: str) -> list[str]:
    """Lower-cased words, digit runs and single non-space symbols, in order."""
    return _TOKEN.findall(text.lower())


def python_topics() -> list[str]:
    """The text of every ``pydoc_data.topics`` entry, in sorted topic order."""
    from pydoc_data.topics import topics

    return [topics[name] for name in sorted(topics)]


def build_corpus(
    vocab_size: int = 2000, valid_fraction: float = 0.1, documents: list[str] | None = None
) -> Corpus:
    """Tokenise ``documents`` (default ``python_topics()``), split each, map to ids.

    Args:
      vocab_size: ids in the vocabulary, ``<unk>`` included (``>= 2``).
      valid_fraction: share of every document's tokens, at its end, held out
        (in ``(0, 1)``).
    """
    if not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(f"vocab_size must be an int >= 2, got {vocab_size!r}")
    if not 0 < valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    train: list[str] = []
    valid: list[str] = []
    for document in python_topics() if documents is None else documents:
        tokens = tokenize(document)
        cut = int(round(len(tokens) * (1 - valid_fraction)))
        train += tokens[:cut]
        valid += tokens[cut:]
    if len(train) < 2 or len(valid) < 2:
        raise ValueError(
            f"the documents split into {len(train)} training and {len(valid)} validation "
            "tokens: too few"
        )
    counts = collections.Counter(train)
    frequent = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[: vocab_size - 1]
    vocab = (UNKNOWN, *(word for word, _ in frequent))
    ids = {word: i for i, word in enumerate(vocab)}
    return Corpus(
        vocab=vocab,
        train=np.array([ids.get(word, 0) for word in train], np.int32),
        valid=np.array([ids.get(word, 0) for word in valid], np.int32),
    )


def windows(tokens: np.ndarray, length: int) -> np.ndarray:
    """Non-overlapping windows of ``length + 1`` tokens (inputs and shifted targets):
    ``[len(tokens) // (length + 1), length + 1]``."""
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    count = len(tokens) // (length + 1)
    if count == 0:
        raise ValueError(f"{len(tokens)} tokens are too few for one window of {length + 1}")
    return tokens[: count * (length + 1)].reshape(count, length + 1)
