"""SentencePiece tokenizers: train a small unigram model on local text, load any ``.model``.

Special ids of a model trained by ``train_tokenizer`` (the T5 convention)::

    0                          <pad>           padding (never produced by encode)
    1                          </s>            end of sequence (EOS)
    2                          <unk>           any character outside the vocabulary
    3 .. 3 + num_sentinels - 1 <extra_id_k>    sentinel k = id 3 + k (gap-sentence masks)
    3 + num_sentinels ..       learned pieces

There is no beginning-of-sequence id. The sentinels are user-defined pieces: the
text ``"<extra_id_0>"`` always encodes to the id 3 (so masked text can be tokenised
as text; where it follows a space or starts the text, the word-boundary piece
``"▁"`` comes before it), and the id decodes back to that text.

``Tokenizer`` loads any SentencePiece model. Its ``pad_id``, ``eos_id`` and
``unk_id`` are the model's own; a model without a pad piece pads with its EOS id
(padding always follows an EOS and masks mark the real positions), a model without
an EOS or unknown piece is rejected. Its sentinels are the pieces ``<extra_id_0>``,
``<extra_id_1>``, ... that it holds (none for most models trained elsewhere; T5 and
LongT5 models hold 100, at the end of their vocabularies).

Round trip: ``decode(encode(text)) == text`` when ``text`` is already in the form
SentencePiece normalises to (NFKC, words separated by single spaces, no leading or
trailing whitespace; with the default normaliser newlines and tabs become spaces)
and every character is in the vocabulary. A run of characters outside the
vocabulary encodes to one ``unk_id`` and decodes as ``" \u2047 "``.
"""

from __future__ import annotations

import io
import numbers
import os
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import sentencepiece as spm

__all__ = [
    "EOS_ID",
    "PAD_ID",
    "UNK_ID",
    "Tokenizer",
    "default_tokenizer",
    "fit_to_length",
    "sentinel_piece",
    "train_tokenizer",
]

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
FIRST_SENTINEL_ID = 3
"""Id of ``<extra_id_0>`` in a model trained by ``train_tokenizer``."""

DEFAULT_VOCAB_SIZE = 4000
DEFAULT_NUM_SENTINELS = 100

MAX_LINE_CHARS = 16384
"""Lines of training text are cut into pieces of at most this many characters."""


def sentinel_piece(k: int) -> str:
    """The text of sentinel ``k``: ``"<extra_id_{k}>"``."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
        raise ValueError(f"k must be an integer >= 0, got {k!r}")
    return f"<extra_id_{int(k)}>"


def fit_to_length(
    ids: Sequence[int], length: int, *, eos_id: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-length ids: the first ``length - 1`` of ``ids``, then ``eos_id``, then
    ``pad_id`` up to ``length``.

    Args:
      ids: token ids without EOS.
      length: output length, ``>= 2``.
      eos_id, pad_id: the tokenizer's EOS and padding ids.

    Returns:
      ``(ids, mask)``: ``int32[length]`` and ``bool[length]``, the mask true on the
      ``min(len(ids), length - 1) + 1`` real ids (the EOS included). The EOS is always
      there: a longer sequence loses its tail, not its end marker.
    """
    length = _check_int(length, "length", 2)
    kept = [int(i) for i in ids[: length - 1]]
    out = np.full(length, pad_id, np.int32)
    out[: len(kept)] = kept
    out[len(kept)] = eos_id
    mask = np.zeros(length, bool)
    mask[: len(kept) + 1] = True
    return out, mask


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _training_lines(texts: str | os.PathLike | Iterable[str]) -> list[str]:
    """Non-empty lines of ``texts``: a path to a text file, or an iterable of strings."""
    if isinstance(texts, os.PathLike) or (isinstance(texts, str) and os.path.isfile(texts)):
        path = os.fspath(texts)
        if not os.path.isfile(path):
            raise ValueError(f"texts must be an existing text file, got the path {path!r}")
        try:
            with open(path, encoding="utf-8") as file:
                texts = [file.read()]
        except UnicodeDecodeError:
            raise ValueError(f"texts must be a UTF-8 text file, got the file {path!r}") from None
    elif isinstance(texts, str):
        raise ValueError(
            "texts must be a path to an existing text file or an iterable of strings, "
            f"got the string {texts[:80]!r}, which names no file (pass [text] for raw text)"
        )
    lines = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts must hold strings, got {type(text).__name__} at index {i}")
        for line in text.splitlines():
            line = line.strip()
            while line:
                lines.append(line[:MAX_LINE_CHARS])
                line = line[MAX_LINE_CHARS:]
    if not lines:
        raise ValueError("texts must hold some non-whitespace text, got none")
    return lines


def train_tokenizer(
    texts: str | os.PathLike | Iterable[str],
    model_path: str | os.PathLike,
    vocab_size: int,
    *,
    num_sentinels: int = DEFAULT_NUM_SENTINELS,
    character_coverage: float = 1.0,
    max_training_lines: int = 2_000_000,
    seed: int = 0,
) -> Tokenizer:
    """Train a unigram SentencePiece model on local text and save it to ``model_path``.

    Training is deterministic: one thread, the sampling seed ``seed``, lines in the
    given order; the same text and arguments give a byte-identical model.

    Args:
      texts: a path to a UTF-8 text file, or an iterable of strings; every non-empty
        line is one training sentence (lines longer than ``MAX_LINE_CHARS`` are cut).
      model_path: where to write the model (``.model`` is appended when missing; the
        vocabulary listing is written next to it with suffix ``.vocab``). The file is
        replaced atomically.
      vocab_size: pieces in the model, the special and sentinel ids included; must be
        larger than ``3 + num_sentinels`` and small enough for the text to support.
      num_sentinels: sentinel pieces ``<extra_id_0>`` ... at ids ``3, 4, ...``.
      character_coverage: share of the characters of the text (by frequency) that
        get pieces of their own; the rest map to ``<unk>``.
      max_training_lines: at most this many lines are used (a seeded sample when the
        text has more).
      seed: seed of SentencePiece's sampling.

    Returns:
      The trained model as a ``Tokenizer``.
    """
    vocab_size = _check_int(vocab_size, "vocab_size", 1)
    num_sentinels = _check_int(num_sentinels, "num_sentinels", 0)
    max_training_lines = _check_int(max_training_lines, "max_training_lines", 1)
    seed = _check_int(seed, "seed", 0)
    if vocab_size <= FIRST_SENTINEL_ID + num_sentinels:
        raise ValueError(
            f"vocab_size must be larger than {FIRST_SENTINEL_ID + num_sentinels} "
            f"(3 special ids + num_sentinels={num_sentinels}), got {vocab_size}"
        )
    if not 0.0 < character_coverage <= 1.0:
        raise ValueError(f"character_coverage must be in (0, 1], got {character_coverage!r}")
    model_path = os.fspath(model_path)
    if not model_path.endswith(".model"):
        model_path += ".model"
    lines = _training_lines(texts)
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=model,
            model_type="unigram",
            vocab_size=vocab_size,
            pad_id=PAD_ID,
            eos_id=EOS_ID,
            unk_id=UNK_ID,
            bos_id=-1,
            user_defined_symbols=[sentinel_piece(k) for k in range(num_sentinels)],
            character_coverage=character_coverage,
            input_sentence_size=max_training_lines,
            shuffle_input_sentence=True,
            max_sentence_length=4 * MAX_LINE_CHARS,
            split_digits=True,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as error:
        raise ValueError(
            f"SentencePiece could not train a model with vocab_size={vocab_size} on "
            f"{len(lines)} lines of text: {error}"
        ) from None
    tokenizer = Tokenizer.from_bytes(model.getvalue(), name=model_path)
    vocab = "".join(
        f"{tokenizer.processor.id_to_piece(i)}\t{tokenizer.processor.get_score(i):g}\n"
        for i in range(tokenizer.vocab_size)
    )
    directory = os.path.dirname(os.path.abspath(model_path))
    os.makedirs(directory, exist_ok=True)
    _write_atomically(model_path[: -len(".model")] + ".vocab", vocab.encode(), directory)
    _write_atomically(model_path, model.getvalue(), directory)
    tokenizer.path = model_path
    return tokenizer


def _write_atomically(path: str, data: bytes, directory: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


class Tokenizer:
    """A SentencePiece model: text <-> token ids.

    Args:
      model_path: a SentencePiece ``.model`` file (any: trained by
        ``train_tokenizer`` or elsewhere, e.g. T5's).

    Attributes:
      path: the model file (``None`` for a model built with ``from_bytes``).
      vocab_size: number of ids, ``0 .. vocab_size - 1``.
      pad_id, eos_id, unk_id: the special ids (see the module docstring).
      sentinel_ids: ids of ``<extra_id_0>``, ``<extra_id_1>``, ... (consecutive
        numbering from 0, as far as the model holds them).
      processor: the underlying ``sentencepiece.SentencePieceProcessor``.
    """

    def __init__(self, model_path: str | os.PathLike):
        path = os.fspath(model_path)
        if not os.path.isfile(path):
            raise ValueError(
                f"model_path must be an existing SentencePiece model file, got {path!r}"
            )
        with open(path, "rb") as file:
            data = file.read()
        self._load(data, path)
        self.path = path

    @classmethod
    def from_bytes(cls, model: bytes, *, name: str = "<bytes>") -> Tokenizer:
        """A tokenizer from the serialised model ``model`` (the bytes of a ``.model`` file)."""
        tokenizer = cls.__new__(cls)
        tokenizer._load(bytes(model), name)
        tokenizer.path = None
        return tokenizer

    def _load(self, data: bytes, name: str) -> None:
        processor = spm.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(data)
        except (RuntimeError, OSError, TypeError):
            raise ValueError(
                f"model_path must be a SentencePiece model, got {name!r}, which is not one"
            ) from None
        if processor.get_piece_size() == 0:
            raise ValueError(f"model_path must be a SentencePiece model, got {name!r} (no pieces)")
        if processor.eos_id() < 0 or processor.unk_id() < 0:
            raise ValueError(
                f"model_path must be a SentencePiece model with </s> and <unk> pieces, got "
                f"{name!r} with eos_id={processor.eos_id()}, unk_id={processor.unk_id()}"
            )
        self.processor = processor
        self._model = data
        self.vocab_size = int(processor.get_piece_size())
        self.eos_id = int(processor.eos_id())
        self.unk_id = int(processor.unk_id())
        self.pad_id = int(processor.pad_id()) if processor.pad_id() >= 0 else self.eos_id
        sentinels = []
        while True:
            i = processor.piece_to_id(sentinel_piece(len(sentinels)))
            if i == self.unk_id:
                break
            sentinels.append(int(i))
        self.sentinel_ids: tuple[int, ...] = tuple(sentinels)

    @property
    def num_sentinels(self) -> int:
        """Number of sentinel ids."""
        return len(self.sentinel_ids)

    def sentinel_id(self, k: int) -> int:
        """Id of sentinel ``k`` (``<extra_id_{k}>``)."""
        if (
            isinstance(k, bool)
            or not isinstance(k, numbers.Integral)
            or not (0 <= k < self.num_sentinels)
        ):
            raise ValueError(
                f"k must be an integer in [0, {self.num_sentinels}) (the model's sentinels), "
                f"got {k!r}"
            )
        return self.sentinel_ids[int(k)]

    def encode(self, text: str, *, add_eos: bool = False) -> list[int]:
        """Token ids of ``text`` (non-empty, not only whitespace), with a final EOS if
        ``add_eos``."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"text must hold some non-whitespace characters, got {text!r}")
        ids = self.processor.encode(text)
        return [*ids, self.eos_id] if add_eos else list(ids)

    def encode_fixed(self, text: str, length: int) -> tuple[np.ndarray, np.ndarray]:
        """``fit_to_length(encode(text), length)``: ``(int32[length], bool[length])``,
        truncated to ``length - 1`` ids, then EOS, then padding."""
        return fit_to_length(self.encode(text), length, eos_id=self.eos_id, pad_id=self.pad_id)

    def decode(self, ids: Sequence[int] | Any) -> str:
        """Text of ``ids`` (a sequence or 1-D integer array) up to the first EOS,
        padding skipped."""
        ids = [int(i) for i in getattr(ids, "tolist", lambda: ids)()]
        for position, i in enumerate(ids):
            if not 0 <= i < self.vocab_size:
                raise ValueError(
                    f"ids must lie in [0, {self.vocab_size}), got {i} at position {position}"
                )
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.processor.decode([i for i in ids if i != self.pad_id])

    def __getstate__(self) -> dict[str, Any]:
        return {"model": self._model, "path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._load(state["model"], state["path"] or "<bytes>")
        self.path = state["path"]

    def __repr__(self) -> str:
        return (
            f"Tokenizer({self.path or '<bytes>'!r}, vocab_size={self.vocab_size}, "
            f"num_sentinels={self.num_sentinels})"
        )


def default_tokenizer(
    cache_dir: str | os.PathLike | None = None,
    *,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    num_sentinels: int = DEFAULT_NUM_SENTINELS,
) -> Tokenizer:
    """The tokenizer of the summarization data, trained on first use and cached.

    A unigram model (``train_tokenizer``, character coverage 0.9999) trained on the
    documents and summaries of the training split of the default summarization data
    (``seq_models.summarization``: every source, seed 0). Training takes about 15 s;
    the model is saved as
    ``<cache_dir>/tokenizers/doc_summarization_<source versions>_unigram<vocab_size>_``
    ``sentinels<num_sentinels>.model`` and loaded from there afterwards.

    Args:
      cache_dir: ``None`` means ``seq_models.summarization.default_data_dir()``
        (``$MILES_JAX_DATA_DIR``, else ``~/.cache/miles_jax/tensorflow_datasets``).
      vocab_size: pieces in the model.
      num_sentinels: sentinel pieces (ids ``3 .. 2 + num_sentinels``).
    """
    from seq_models.summarization.builder import default_data_dir, version_tag
    from seq_models.summarization.corpus import SOURCES, extract_examples, split_examples

    vocab_size = _check_int(vocab_size, "vocab_size", 1)
    num_sentinels = _check_int(num_sentinels, "num_sentinels", 0)
    directory = os.path.join(
        os.fspath(cache_dir) if cache_dir is not None else default_data_dir(), "tokenizers"
    )
    name = f"doc_summarization_{version_tag(SOURCES)}_unigram{vocab_size}_sentinels{num_sentinels}"
    path = os.path.join(directory, f"{name}.model")
    if os.path.isfile(path):
        return Tokenizer(path)
    train = split_examples(extract_examples(SOURCES), "train")
    texts = [e.document for e in train] + [e.summary for e in train]
    return train_tokenizer(
        texts,
        path,
        vocab_size,
        num_sentinels=num_sentinels,
        character_coverage=0.9999,
    )
