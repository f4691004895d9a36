"""Data sets every package can use, generated or read offline.

- ``images``: scikit-learn's digits (shipped with scikit-learn) and any prepared
  TFDS image classification set, as ``{"image", "label"}`` sources;
- ``text``: a word-level corpus of the Python documentation topics that ship with
  Python, with its tokenizer and fixed-length windows;
- ``cache``: ``default_data_dir()``, where every generated data set (Darcy flow,
  documentation summarization) and trained tokenizer is cached.
"""

from training.datasets.cache import default_data_dir
from training.datasets.images import ImageData, load_digits, load_images, load_tfds_images
from training.datasets.text import Corpus, build_corpus, tokenize, windows

__all__ = [
    "Corpus",
    "ImageData",
    "build_corpus",
    "default_data_dir",
    "load_digits",
    "load_images",
    "load_tfds_images",
    "tokenize",
    "windows",
]
