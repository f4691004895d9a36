"""Documents and their summaries, extracted from documentation that ships with the code.

Sources (``SOURCES``), read from the installed files, nothing imported or downloaded:

- ``"python"``: the Python reference topics of ``pydoc_data.topics`` (the text behind
  ``help("if")``) and the docstrings of the standard library's source files;
- ``"numpy"``, ``"scipy"``: the docstrings of those packages' source files.

Source files are parsed with ``ast`` (never imported). Every source file gives up to
three kinds of example, each a ``(document, summary)`` pair:

- module: the module's docstring and the docstrings of its public top-level classes
  (with their public methods, ``__init__`` and ``__call__``) and functions, each
  under a header line (``class Name(bases)``, ``def name(arguments)``);
- class: one public class, its docstring and its methods' docstrings;
- function: one public top-level function and its docstring;

and every reference topic gives one (its text). The summary is the first prose
paragraph of the leading docstring (of the topic's text): the first paragraph that
is not a reST heading, not indented (code, grammar), not a version note; its lines
are joined by single spaces. That paragraph is removed from the document, whose first
line is its title (the module name, the header line or the topic's heading). An
example is dropped when the summary is unusable (fewer than 3 or more than
``MAX_SUMMARY_WORDS`` words, fewer than 3 words of letters, a call signature, a
copyright, licence or author line), when the document has fewer than
``min_document_words`` whitespace-separated words, or when the summary still occurs
verbatim in the document (whitespace normalised). Of examples whose documents are
equal (whitespace normalised) only the first by ``id`` is kept.

Splits: an example's split is decided by its group (its source file, or its topic),
so the module, class and function examples of one file always share a split: the
group's seeded hash ``u = sha256(f"{seed}/{group}")`` (a number in ``[0, 1)``) puts it
in ``validation`` if ``u < validation_fraction``, in ``test`` if ``u <
validation_fraction + test_fraction``, else in ``train``. Within a split, examples are
ordered by the seeded hash of their id. Both hashes depend only on the seed and the
names, so the data depend only on the seed and the installed versions of the sources
(``source_versions``).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib.metadata
import importlib.util
import numbers
import os
import platform
import re
import statistics
import sysconfig
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = [
    "DEFAULT_MIN_DOCUMENT_WORDS",
    "MAX_SUMMARY_WORDS",
    "SOURCES",
    "SPLITS",
    "Example",
    "extract_examples",
    "length_statistics",
    "split_examples",
    "source_versions",
]

SOURCES: tuple[str, ...] = ("python", "numpy", "scipy")
"""Sources of documents, in the order their examples are extracted."""

SPLITS: tuple[str, ...] = ("train", "validation", "test")

DEFAULT_MIN_DOCUMENT_WORDS = 100
MAX_SUMMARY_WORDS = 100

_SKIPPED_DIRS = {
    "__pycache__",
    "_vendor",
    "_vendored",
    "vendored",
    "ensurepip",
    "idlelib",
    "lib2to3",
    "site-packages",
    "dist-packages",
    "test",
    "tests",
    "turtledemo",
}
_HEADING_LINE = re.compile(r"^\s*([=\-~*^#+`:.'\"_])\1{2,}\s*$")
_VERSION_NOTE = re.compile(
    r"^(new in|changed in|deprecated|added in|\*\*source code:?\*\*|source code:|"
    r"\.\. |see also\b|availability:)",
    re.IGNORECASE,
)
_SIGNATURE = re.compile(r"^[\w.]+\s*\(")
_BOILERPLATE = re.compile(r"copyright|licen[cs]e|\bauthors?\b|\$id|-\*-", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z]{2,}")


@dataclasses.dataclass(frozen=True)
class Example:
    """One document and its summary.

    Attributes:
      id: ``"<source>:<kind>:<name>"``, e.g. ``"python:module:json.decoder"``,
        ``"numpy:function:numpy.linalg._linalg.solve"``, ``"python:topic:if"``.
      group: the unit of the split: ``"<source>:<module>"`` or ``"python:topic:<name>"``.
      document: the text to summarise (the summary paragraph removed).
      summary: the removed paragraph, on one line.
    """

    id: str
    group: str
    document: str
    summary: str


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_sources(sources: Any) -> tuple[str, ...]:
    """``sources`` as a tuple in ``SOURCES`` order; a ``ValueError`` if any is unknown."""
    if isinstance(sources, str):
        sources = (sources,)
    try:
        given = tuple(sources)
    except TypeError:
        raise ValueError(
            f"sources must be a non-empty subset of {SOURCES}, got {sources!r}"
        ) from None
    if not given or any(s not in SOURCES for s in given):
        raise ValueError(f"sources must be a non-empty subset of {SOURCES}, got {sources!r}")
    return tuple(s for s in SOURCES if s in given)


def source_versions(sources: Sequence[str] = SOURCES) -> dict[str, str]:
    """Installed version of every source: Python's for ``"python"``, else the package's."""
    versions = {}
    for source in check_sources(sources):
        if source == "python":
            versions[source] = platform.python_version()
        else:
            try:
                versions[source] = importlib.metadata.version(source)
            except importlib.metadata.PackageNotFoundError:
                raise ValueError(
                    f"sources must name installed packages, got {source!r}, which is not installed"
                ) from None
    return versions


def _source_root(source: str) -> str:
    if source == "python":
        return sysconfig.get_paths()["stdlib"]
    spec = importlib.util.find_spec(source)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"sources must name installed packages, got {source!r}")
    return list(spec.submodule_search_locations)[0]


def _source_files(source: str) -> Iterator[tuple[str, str]]:
    """``(dotted module name, path)`` of every ``.py`` file of ``source``, sorted."""
    root = _source_root(source)
    prefix = "" if source == "python" else source
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(
            d
            for d in subdirectories
            if d not in _SKIPPED_DIRS and not d.startswith((".", "config-")) and "-" not in d
        )
        relative = os.path.relpath(directory, root)
        parts = [] if relative == "." else relative.split(os.sep)
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            stem = name[: -len(".py")]
            module = [prefix, *parts] if stem == "__init__" else [prefix, *parts, stem]
            dotted = ".".join(p for p in module if p)
            if dotted:
                yield dotted, os.path.join(directory, name)


def _paragraphs(text: str) -> list[str]:
    return [p.rstrip() for p in re.split(r"\n[ \t]*\n", text) if p.strip()]


def _is_heading(paragraph: str) -> bool:
    lines = paragraph.strip("\n").splitlines()
    return 2 <= len(lines) <= 3 and bool(_HEADING_LINE.match(lines[-1]))


def _is_prose(paragraph: str) -> bool:
    return not (
        _is_heading(paragraph)
        or all(_HEADING_LINE.match(line) for line in paragraph.splitlines())
        or paragraph[:1].isspace()
        or _VERSION_NOTE.match(paragraph.strip())
        or paragraph.lstrip().startswith(">>>")
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _usable_summary(summary: str) -> bool:
    words = summary.split()
    return (
        3 <= len(words) <= MAX_SUMMARY_WORDS
        and len(_WORD.findall(summary)) >= 3
        and not _SIGNATURE.match(summary)
        and not _BOILERPLATE.search(summary)
    )


def _take_summary(text: str) -> tuple[str, str] | None:
    """``(summary, rest)``: the first prose paragraph of ``text`` and the other paragraphs."""
    paragraphs = _paragraphs(text)
    for i, paragraph in enumerate(paragraphs):
        if _is_prose(paragraph):
            rest = paragraphs[:i] + paragraphs[i + 1 :]
            return _one_line(paragraph), "\n\n".join(rest)
    return None


def _header(node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef, owner: str = "") -> str:
    name = f"{owner}.{node.name}" if owner else node.name
    if isinstance(node, ast.ClassDef):
        bases = ", ".join(ast.unparse(b) for b in [*node.bases, *node.keywords])
        return f"class {name}({bases})" if bases else f"class {name}"
    keyword = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    return f"{keyword} {name}({ast.unparse(node.args)})"


def _is_public_method(node: ast.stmt) -> bool:
    return isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
        not node.name.startswith("_") or node.name in ("__init__", "__call__")
    )


def _blocks(node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """Header and docstring of ``node`` and, for a class, of its public methods."""
    blocks = []
    doc = ast.get_docstring(node)
    if doc:
        blocks.append(f"{_header(node)}\n\n{doc}")
    if isinstance(node, ast.ClassDef):
        for member in node.body:
            member_doc = ast.get_docstring(member) if _is_public_method(member) else None
            if member_doc:
                blocks.append(f"{_header(member, node.name)}\n\n{member_doc}")
    return blocks


def _example(
    source: str, kind: str, name: str, group: str, title: str, text: str, extra: Sequence[str]
) -> Example | None:
    taken = _take_summary(text)
    if taken is None:
        return None
    summary, rest = taken
    document = "\n\n".join(part for part in (title, rest, *extra) if part)
    return Example(id=f"{source}:{kind}:{name}", group=group, document=document, summary=summary)


def _file_examples(source: str, module: str, path: str) -> list[Example]:
    try:
        with open(path, encoding="utf-8") as file:
            tree = ast.parse(file.read())
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    group = f"{source}:{module}"
    public = [
        node
        for node in tree.body
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and not node.name.startswith("_")
    ]
    examples = []
    module_doc = ast.get_docstring(tree)
    if module_doc:
        blocks = [block for node in public for block in _blocks(node)]
        examples.append(_example(source, "module", module, group, module, module_doc, blocks))
    for node in public:
        doc = ast.get_docstring(node)
        if not doc:
            continue
        extra = _blocks(node)[1:]
        kind = "class" if isinstance(node, ast.ClassDef) else "function"
        name = f"{module}.{node.name}"
        examples.append(_example(source, kind, name, group, _header(node), doc, extra))
    return [e for e in examples if e is not None]


def _topic_examples() -> list[Example]:
    from pydoc_data.topics import topics

    examples = []
    for name in sorted(topics):
        group = f"python:topic:{name}"
        example = _example("python", "topic", name, group, "", topics[name].strip("\n"), ())
        if example is not None:
            examples.append(example)
    return examples


def _keep(example: Example, min_document_words: int) -> bool:
    document = _one_line(example.document)
    return (
        _usable_summary(example.summary)
        and len(document.split()) >= min_document_words
        and example.summary not in document
    )


@functools.lru_cache(maxsize=8)
def _extract(sources: tuple[str, ...], min_document_words: int) -> tuple[Example, ...]:
    examples: list[Example] = []
    for source in sources:
        if source == "python":
            examples += _topic_examples()
        for module, path in _source_files(source):
            examples += _file_examples(source, module, path)
    kept, seen_documents, seen_ids = [], set(), set()
    for example in sorted(examples, key=lambda e: e.id):
        key = _one_line(example.document)
        if example.id in seen_ids or key in seen_documents:
            continue
        if _keep(example, min_document_words):
            kept.append(example)
            seen_documents.add(key)
            seen_ids.add(example.id)
    return tuple(kept)


def extract_examples(
    sources: Sequence[str] = SOURCES, *, min_document_words: int = DEFAULT_MIN_DOCUMENT_WORDS
) -> tuple[Example, ...]:
    """Every usable example of ``sources`` (all splits), sorted by ``id``.

    Args:
      sources: a non-empty subset of ``SOURCES``.
      min_document_words: documents with fewer whitespace-separated words are dropped.

    Returns:
      The examples (cached per argument values in this process).
    """
    sources = check_sources(sources)
    min_document_words = _check_int(min_document_words, "min_document_words", 1)
    return _extract(sources, min_document_words)


def _unit_hash(seed: int, name: str) -> float:
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def check_fractions(validation_fraction: Any, test_fraction: Any) -> tuple[float, float]:
    """Validated ``(validation_fraction, test_fraction)``: each in ``(0, 1)``, sum below 1."""
    for name, value in (
        ("validation_fraction", validation_fraction),
        ("test_fraction", test_fraction),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
            raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    if validation_fraction + test_fraction >= 1:
        raise ValueError(
            "validation_fraction + test_fraction must be below 1, got "
            f"{validation_fraction} + {test_fraction}"
        )
    return float(validation_fraction), float(test_fraction)


def split_of(group: str, *, seed: int, validation_fraction: float, test_fraction: float) -> str:
    """The split of every example of ``group`` (see the module docstring)."""
    u = _unit_hash(seed, group)
    if u < validation_fraction:
        return "validation"
    if u < validation_fraction + test_fraction:
        return "test"
    return "train"


def split_examples(
    examples: Sequence[Example],
    split: str,
    *,
    seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    max_examples: int | None = None,
) -> list[Example]:
    """The examples of ``split``, in the seeded order of the module docstring.

    Args:
      examples: e.g. ``extract_examples(...)``.
      split: one of ``SPLITS``.
      seed: seed of the split and of the order, ``>= 0``.
      validation_fraction, test_fraction: expected shares of the groups.
      max_examples: keep only the first ``max_examples`` of the split (``None``: all).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    seed = _check_int(seed, "seed", 0)
    validation_fraction, test_fraction = check_fractions(validation_fraction, test_fraction)
    if max_examples is not None:
        max_examples = _check_int(max_examples, "max_examples", 1)
    chosen = [
        e
        for e in examples
        if split_of(
            e.group,
            seed=seed,
            validation_fraction=validation_fraction,
            test_fraction=test_fraction,
        )
        == split
    ]
    chosen.sort(key=lambda e: (_unit_hash(seed, e.id), e.id))
    return chosen[:max_examples]


def _summary_stats(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "median": 0.0, "max": 0}
    return {
        "min": int(min(values)),
        "median": float(statistics.median(values)),
        "max": int(max(values)),
    }


def length_statistics(
    examples: Sequence[Any], tokenizer: Any | None = None
) -> dict[str, dict[str, float]]:
    """Lengths of the documents and summaries of ``examples``: min, median and max.

    Args:
      examples: ``Example`` objects or ``{"document": str, "summary": str}`` dicts
        (e.g. a split from ``load_summarization``).
      tokenizer: a ``seq_models.tokenizer.Tokenizer`` to count tokens with (no EOS);
        ``None`` counts characters and words only.

    Returns:
      ``{"examples": {"count": n}, "document_chars": {...}, "document_words": {...},
      "document_tokens": {...}, "summary_chars": ..., "summary_words": ...,
      "summary_tokens": ...}``, each ``{"min", "median", "max"}``; the token entries
      only with a tokenizer.
    """
    stats: dict[str, dict[str, float]] = {"examples": {"count": len(examples)}}
    texts: dict[str, list[str]] = {"document": [], "summary": []}
    for example in examples:
        for field in texts:
            value = example[field] if isinstance(example, dict) else getattr(example, field)
            texts[field].append(value)
    for field, values in texts.items():
        stats[f"{field}_chars"] = _summary_stats([len(v) for v in values])
        stats[f"{field}_words"] = _summary_stats([len(v.split()) for v in values])
        if tokenizer is not None:
            stats[f"{field}_tokens"] = _summary_stats([len(tokenizer.encode(v)) for v in values])
    return stats
