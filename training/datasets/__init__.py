"""Data sets every package can use, generated or read offline.

- ``images``: scikit-learn's digits (shipped with scikit-learn) and any prepared
  TFDS image classification set, as ``{"image", "label"}`` sources;
- ``text``: a word-level corpus of the Python documentation topics that ship with
  Python, with its tokenizer and fixed-length windows.
"""

from training.datasets.images import ImageData, load_digits, load_images, load_tfds_images
from training.datasets.text import Corpus, build_corpus, tokenize, windows

__all__ = [
    "Corpus",
    "ImageData",
    "build_corpus",
    "load_digits",
    "load_images",
    "load_tfds_images",
    "tokenize",
    "windows",
]
