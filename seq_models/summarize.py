"""Summarise a text of any length with a trained LOCOST run: ``python -m seq_models summarize``.

The whole document is encoded at once (no truncation: the SSM encoder costs
``O(L log L)``), one jitted layer at a time in bounded memory
(:func:`seq_models.long_encoding.encode_in_blocks`) with a progress bar over the
encoder layers; the decoder then runs beam search from the cached encoder outputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from miles_cli import UsageError
from seq_models.locost import LOCOST, beam_decoder
from seq_models.long_encoding import encode_in_blocks
from seq_models.tokenizer import Tokenizer


def read_document(path: str | os.PathLike) -> str:
    """The UTF-8 text of ``path``; ``UsageError`` for a missing, binary or empty file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    data = path.read_bytes()
    if b"\0" in data:
        raise UsageError(f"{path} is a binary file, not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UsageError(
            f"{path} is not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    if not text.strip():
        raise UsageError(f"{path} is empty: nothing to summarise")
    return text


def summarize_text(
    model: LOCOST,
    params,
    tokenizer: Tokenizer,
    text: str,
    *,
    max_length: int = 64,
    num_beams: int = 2,
    progress: bool = True,
) -> tuple[str, int]:
    """``(summary, number of input tokens)`` of ``text``, however long."""
    tokens = np.asarray(tokenizer.encode(text, add_eos=True), np.int32)
    encoded = encode_in_blocks(model, params, tokens[None], progress=progress)
    decode = beam_decoder(model, max_length, num_beams, tokenizer.eos_id, tokenizer.pad_id)
    out = np.asarray(decode(params, encoded, jnp.ones(encoded.shape[:2], bool)))[0]
    return tokenizer.decode(out.tolist()), len(tokens)
