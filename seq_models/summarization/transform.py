"""Tokenised, fixed-length summarization examples for training and evaluation."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["SummarizationTransform"]


class SummarizationTransform:
    """``{"document": str, "summary": str}`` -> fixed-length int32 arrays with masks.

    Truncation: the document's ids are cut to their first ``input_length - 1``, the
    summary's to their first ``target_length - 1``; an EOS follows either (so the end
    marker survives truncation), then padding with the tokenizer's ``pad_id``. See
    ``seq_models.tokenizer.fit_to_length``.

    Args:
      tokenizer: a ``seq_models.tokenizer.Tokenizer``.
      input_length: ``L_in``, ids per document, ``>= 2``.
      target_length: ``L_out``, ids per summary, ``>= 2``.

    Calling it on an example returns ``{"inputs": int32[L_in], "inputs_mask":
    bool[L_in], "targets": int32[L_out], "targets_mask": bool[L_out]}``, the masks
    true on the real ids (the EOS included). Usable as the ``transform`` of
    ``training.data.make_loader`` (and picklable, for worker processes).
    """

    def __init__(self, tokenizer: Any, input_length: int, target_length: int):
        for name, value in (("input_length", input_length), ("target_length", target_length)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 2:
                raise ValueError(f"{name} must be an integer >= 2, got {value!r}")
        self.tokenizer = tokenizer
        self.input_length = int(input_length)
        self.target_length = int(target_length)

    def __call__(self, example: dict[str, Any]) -> dict[str, np.ndarray]:
        texts = {}
        for field in ("document", "summary"):
            if field not in example:
                raise ValueError(f"example must have a {field!r} entry, got keys {sorted(example)}")
            value = example[field]
            texts[field] = value.decode("utf-8") if isinstance(value, bytes | np.bytes_) else value
        inputs, inputs_mask = self.tokenizer.encode_fixed(texts["document"], self.input_length)
        targets, targets_mask = self.tokenizer.encode_fixed(texts["summary"], self.target_length)
        return {
            "inputs": inputs,
            "inputs_mask": inputs_mask,
            "targets": targets,
            "targets_mask": targets_mask,
        }
