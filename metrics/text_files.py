"""Reading sets of texts: one text per line, or JSON Lines with the text in a field."""

from __future__ import annotations

import json
from pathlib import Path

FORMATS = ("auto", "lines", "jsonl")
JSONL_SUFFIXES = (".jsonl", ".ndjson")


def read_texts(path: str | Path, text_format: str = "auto", field: str = "text") -> list[str]:
    """Texts of ``path``: ``"lines"`` takes each non-blank line (stripped of its newline),
    ``"jsonl"`` the string ``field`` of each non-blank line's JSON object; ``"auto"`` picks
    ``"jsonl"`` for ``.jsonl``/``.ndjson`` files. Raises ``ValueError`` naming the line at
    fault, or when the file holds no text.
    """
    if text_format not in FORMATS:
        raise ValueError(f"text_format must be one of {FORMATS}, got {text_format!r}")
    path = Path(path)
    if text_format == "auto":
        text_format = "jsonl" if path.suffix.lower() in JSONL_SUFFIXES else "lines"
    texts = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            if text_format == "lines":
                texts.append(line.rstrip("\r\n"))
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not a JSON line ({error.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get(field), str):
                raise ValueError(f"{path}:{number}: expected an object with a string {field!r}")
            texts.append(record[field])
    if not texts:
        raise ValueError(f"{path} holds no text")
    return texts
