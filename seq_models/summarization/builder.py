"""TFDS builder of the offline documentation-summarization data set (see ``corpus``).

Each example is ``{"id": str, "document": str, "summary": str}``; splits ``train``,
``validation`` and ``test``. Files are written as ``array_record`` and read back with
``builder.as_data_source()`` (random access, no TensorFlow needed); example ``i`` of a
split is stored at index ``i`` (shuffling on write is disabled), in the order of
``corpus.split_examples``.

The data depend on the configuration and on the installed versions of the sources,
so the configuration name starts with those versions, e.g.
``python3-11-7_numpy2-4-6_scipy1-17-1``, followed by every field that differs from
its default (``seed3``, ``val0p2``, ``test0p05``, ``minwords50``, ``max16``); a new
Python, NumPy or SciPy builds a new data set beside the old one.

After preparation, ``builder.info.metadata["lengths"]`` holds, per split, the
``corpus.length_statistics`` of the split (characters, words and tokens of the
documents and summaries: min, median, max), and ``builder.info.description`` ends
with the same numbers as a table. Tokens are counted with the tokenizer given to the
builder (by default ``seq_models.tokenizer.default_tokenizer``).

On disk: ``<data_dir>/doc_summarization/<config name>/<version>/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from seq_models.summarization.corpus import (
    DEFAULT_MIN_DOCUMENT_WORDS,
    SOURCES,
    SPLITS,
    _check_int,
    check_fractions,
    check_sources,
    extract_examples,
    length_statistics,
    source_versions,
    split_examples,
)
from training.datasets.cache import default_data_dir

__all__ = [
    "DocSummarization",
    "DocSummarizationConfig",
    "default_data_dir",
    "describe_lengths",
    "load_summarization",
    "summarization_config",
    "version_tag",
]

DEFAULT_SEED = 0
DEFAULT_VALIDATION_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.1


_BASE_DESCRIPTION = (
    "Offline long-document summarization: documentation that ships with Python, NumPy "
    "and SciPy (the Python reference topics and the docstrings of the source files of "
    "modules, classes and functions), each document paired with its own first prose "
    "paragraph, which is removed from the document. Splits by source file (or topic), "
    "seeded."
)


def _token(value: float) -> str:
    return repr(float(value)).replace(".", "p").replace("-", "m").replace("+", "")


def version_tag(sources: Sequence[str]) -> str:
    """``"python3-11-7_numpy2-4-6"``: the installed versions of ``sources``."""
    versions = source_versions(sources)
    return "_".join(f"{s}{versions[s]}".replace(".", "-") for s in check_sources(sources))


@dataclasses.dataclass(eq=False)
class DocSummarizationConfig(tfds.core.BuilderConfig):
    """Configuration of the data set; build one with ``summarization_config``.

    Attributes:
      sources: a non-empty subset of ``corpus.SOURCES``.
      seed: seed of the split and of the order within splits.
      validation_fraction, test_fraction: expected shares of the source files.
      min_document_words: shorter documents are dropped.
      max_examples: at most this many examples per split (``None``: all).
    """

    sources: tuple[str, ...] = SOURCES
    seed: int = DEFAULT_SEED
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION
    test_fraction: float = DEFAULT_TEST_FRACTION
    min_document_words: int = DEFAULT_MIN_DOCUMENT_WORDS
    max_examples: int | None = None


def summarization_config(
    *,
    sources: Sequence[str] = SOURCES,
    seed: int = DEFAULT_SEED,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    min_document_words: int = DEFAULT_MIN_DOCUMENT_WORDS,
    max_examples: int | None = None,
) -> DocSummarizationConfig:
    """Validated configuration whose name encodes the source versions and every
    non-default field (see the module docstring)."""
    sources = check_sources(sources)
    seed = _check_int(seed, "seed", 0)
    validation_fraction, test_fraction = check_fractions(validation_fraction, test_fraction)
    min_document_words = _check_int(min_document_words, "min_document_words", 1)
    if max_examples is not None:
        max_examples = _check_int(max_examples, "max_examples", 1)
    key = (sources, seed, validation_fraction, test_fraction, min_document_words, max_examples)
    if key == _DEFAULT_KEY and _DEFAULT_CONFIGS:
        return _DEFAULT_CONFIGS[0]
    parts = [version_tag(sources)]
    if seed != DEFAULT_SEED:
        parts.append(f"seed{seed}")
    if validation_fraction != DEFAULT_VALIDATION_FRACTION:
        parts.append(f"val{_token(validation_fraction)}")
    if test_fraction != DEFAULT_TEST_FRACTION:
        parts.append(f"test{_token(test_fraction)}")
    if min_document_words != DEFAULT_MIN_DOCUMENT_WORDS:
        parts.append(f"minwords{min_document_words}")
    if max_examples is not None:
        parts.append(f"max{max_examples}")
    return DocSummarizationConfig(
        name="_".join(parts),
        description=(
            f"sources {', '.join(sources)}; seed {seed}; validation {validation_fraction:g}, "
            f"test {test_fraction:g}; documents of >= {min_document_words} words"
            + (f"; at most {max_examples} examples per split" if max_examples else "")
        ),
        sources=sources,
        seed=seed,
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
        min_document_words=min_document_words,
        max_examples=max_examples,
    )


_DEFAULT_KEY = (
    SOURCES,
    DEFAULT_SEED,
    DEFAULT_VALIDATION_FRACTION,
    DEFAULT_TEST_FRACTION,
    DEFAULT_MIN_DOCUMENT_WORDS,
    None,
)
_DEFAULT_CONFIGS: list[DocSummarizationConfig] = []
# Without a source package installed there is no registered configuration.
with contextlib.suppress(ValueError):
    _DEFAULT_CONFIGS.append(summarization_config())


def describe_lengths(lengths: dict[str, dict[str, dict[str, float]]]) -> str:
    """A plain-text table of ``{split: length_statistics(...)}``."""
    lines = []
    for split, stats in lengths.items():
        lines.append(f"{split}: {stats['examples']['count']} examples")
        for key, value in stats.items():
            if key != "examples":
                lines.append(
                    f"  {key:16s} min {value['min']:>7g}  median {value['median']:>9g}  "
                    f"max {value['max']:>7g}"
                )
    return "\n".join(lines)


class DocSummarization(tfds.core.GeneratorBasedBuilder):
    """Documentation summarization: ``document`` -> ``summary`` (see the module docstring).

    Args:
      tokenizer: a ``seq_models.tokenizer.Tokenizer`` or a path to a SentencePiece
        model, used only to report token lengths; ``None`` means
        ``default_tokenizer(data_dir)``. Does not change the data.
      **kwargs: ``data_dir``, ``config`` (a ``summarization_config(...)``; by default
        ``summarization_config()``, the one registered configuration), ``version`` as
        for any TFDS builder.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = list(_DEFAULT_CONFIGS)
    DEFAULT_BUILDER_CONFIG_NAME = _DEFAULT_CONFIGS[0].name if _DEFAULT_CONFIGS else None

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        """This file. (The inherited lookup needs ``importlib_resources``, which
        tensorflow-datasets only declares for Python < 3.9.)"""
        return epath.Path(__file__)

    def __init__(self, *, tokenizer: Any = None, **kwargs: Any):
        if kwargs.get("config") is None:
            kwargs["config"] = summarization_config()
        elif not isinstance(kwargs["config"], DocSummarizationConfig | str):
            raise ValueError(
                "config must be a DocSummarizationConfig from summarization_config(...), got "
                f"{kwargs['config']!r}"
            )
        self._tokenizer = tokenizer
        super().__init__(file_format="array_record", **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(),
                    "document": tfds.features.Text(),
                    "summary": tfds.features.Text(),
                }
            ),
            supervised_keys=("document", "summary"),
            metadata=tfds.core.MetadataDict(),
            # Keep the order of corpus.split_examples.
            disable_shuffling=True,
        )

    def _resolve_tokenizer(self) -> Any:
        from seq_models.tokenizer import Tokenizer, default_tokenizer

        if self._tokenizer is None:
            return default_tokenizer(self.data_dir_root)
        if isinstance(self._tokenizer, str | os.PathLike):
            return Tokenizer(self._tokenizer)
        return self._tokenizer

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[int, dict]]]:
        del dl_manager
        config = self.builder_config
        examples = extract_examples(config.sources, min_document_words=config.min_document_words)
        splits = {
            split: split_examples(
                examples,
                split,
                seed=config.seed,
                validation_fraction=config.validation_fraction,
                test_fraction=config.test_fraction,
                max_examples=config.max_examples,
            )
            for split in SPLITS
        }
        for split, chosen in splits.items():
            if not chosen:
                raise ValueError(
                    f"the split {split!r} of configuration {config.name!r} is empty: raise "
                    "validation_fraction / test_fraction or add sources"
                )
        tokenizer = self._resolve_tokenizer()
        lengths = {split: length_statistics(chosen, tokenizer) for split, chosen in splits.items()}
        self.info.metadata["lengths"] = lengths
        self.info.metadata["source_versions"] = source_versions(config.sources)
        self.info.metadata["tokenizer"] = repr(tokenizer)
        self.info.as_proto.description = (
            f"{_BASE_DESCRIPTION}\n\nConfiguration: {config.description}.\n"
            f"Source versions: {source_versions(config.sources)}.\n"
            f"Lengths (tokens of {tokenizer!r}):\n{describe_lengths(lengths)}"
        )
        return {split: self._generate_examples(chosen) for split, chosen in splits.items()}

    def _generate_examples(self, examples: Sequence[Any]) -> Iterator[tuple[int, dict]]:
        for i, example in enumerate(examples):
            yield i, {"id": example.id, "document": example.document, "summary": example.summary}


class _TextSource:
    """A TFDS data source whose text features are returned as ``str``."""

    def __init__(self, source: Sequence[dict[str, Any]]):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, str]:
        item = self.source[index]
        return {
            key: value.decode("utf-8") if isinstance(value, bytes | np.bytes_) else str(value)
            for key, value in item.items()
        }


def load_summarization(
    split: str,
    *,
    sources: Sequence[str] = SOURCES,
    seed: int = DEFAULT_SEED,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    min_document_words: int = DEFAULT_MIN_DOCUMENT_WORDS,
    max_examples: int | None = None,
    data_dir: str | os.PathLike | None = None,
    tokenizer: Any = None,
) -> Sequence[dict[str, str]]:
    """Random-access summarization data, built on first use.

    Args:
      split: ``"train"``, ``"validation"`` or ``"test"``.
      sources, seed, validation_fraction, test_fraction, min_document_words,
        max_examples: see ``summarization_config``.
      data_dir: TFDS data directory; ``None`` means ``default_data_dir()``.
      tokenizer: used only to report token lengths when the data are built (see
        ``DocSummarization``).

    Returns:
      A sequence (``len``, integer indexing) of ``{"id": str, "document": str,
      "summary": str}``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    config = summarization_config(
        sources=sources,
        seed=seed,
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
        min_document_words=min_document_words,
        max_examples=max_examples,
    )
    builder = DocSummarization(
        config=config,
        data_dir=os.fspath(data_dir) if data_dir is not None else default_data_dir(),
        tokenizer=tokenizer,
    )
    builder.download_and_prepare()
    return _TextSource(builder.as_data_source()[split])
