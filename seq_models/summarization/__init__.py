"""Offline long-document summarization data: documentation that ships with the code.

- ``corpus``: documents and summaries extracted from the Python reference topics and
  the docstrings of the standard library, NumPy and SciPy (``extract_examples``,
  ``split_examples``, ``length_statistics``);
- ``builder``: the TFDS builder ``DocSummarization`` (array_record, cached under the
  data directory) and ``load_summarization`` (random-access ``{"id", "document",
  "summary"}`` sources);
- ``transform``: ``SummarizationTransform``, fixed-length token ids with masks.
"""

from seq_models.summarization.builder import (
    DocSummarization,
    DocSummarizationConfig,
    default_data_dir,
    describe_lengths,
    load_summarization,
    summarization_config,
    version_tag,
)
from seq_models.summarization.corpus import (
    SOURCES,
    SPLITS,
    Example,
    extract_examples,
    length_statistics,
    source_versions,
    split_examples,
)
from seq_models.summarization.transform import SummarizationTransform

__all__ = [
    "SOURCES",
    "SPLITS",
    "DocSummarization",
    "DocSummarizationConfig",
    "Example",
    "SummarizationTransform",
    "default_data_dir",
    "describe_lengths",
    "extract_examples",
    "length_statistics",
    "load_summarization",
    "source_versions",
    "split_examples",
    "summarization_config",
    "version_tag",
]
