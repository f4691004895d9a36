"""Image classification data: scikit-learn's digits (offline) and any TFDS image data set.

Both give random-access sources of ``{"image": [S, S, C] float32, "label": int32}``
with pixel values standardised to about ``[-1, 1]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from miles_cli import UsageError
from training.distributed import primary_first

DIGITS = "digits"
DIGITS_TEST_SIZE = 297  # 1797 digits -> 1500 train / 297 test


@dataclasses.dataclass(frozen=True)
class ImageData:
    """Train and test sources of one data set."""

    train: Sequence[dict[str, Any]]
    test: Sequence[dict[str, Any]]
    num_classes: int
    channels: int


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """``[H, W, C]`` (any dtype) -> ``[size, size, C]`` float32, bilinear."""
    image = np.asarray(image, np.float32)
    if image.shape[:2] == (size, size):
        return image
    channels = [
        np.asarray(Image.fromarray(image[..., c]).resize((size, size), Image.BILINEAR))
        for c in range(image.shape[-1])
    ]
    return np.stack(channels, axis=-1)


def load_digits(image_size: int = 32, seed: int = 0) -> ImageData:
    """scikit-learn's 1797 8x8 digits, upsampled to ``image_size``; a fixed split
    (permutation from ``seed``) of 1500 train and 297 test images."""
    from sklearn.datasets import load_digits as sk_digits

    from training.data import ArraySource

    digits = sk_digits()
    images = digits.images[..., None] / 16.0  # [1797, 8, 8, 1] in [0, 1]
    images = np.stack([resize(x, image_size) for x in images]) * 2.0 - 1.0
    labels = digits.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(labels))
    test, train = order[:DIGITS_TEST_SIZE], order[DIGITS_TEST_SIZE:]
    return ImageData(
        train=ArraySource(image=images[train], label=labels[train]),
        test=ArraySource(image=images[test], label=labels[test]),
        num_classes=10,
        channels=1,
    )


class _Resized:
    """A TFDS source seen through ``resize`` and standardisation, lazily per item."""

    def __init__(self, source: Sequence[dict[str, Any]], image_size: int):
        self.source, self.image_size = source, image_size

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        item = self.source[index]
        image = np.asarray(item["image"])
        if image.ndim == 2:
            image = image[..., None]
        image = resize(image, self.image_size) / 127.5 - 1.0
        return {"image": image, "label": np.int32(item["label"])}


def load_tfds_images(
    name: str,
    image_size: int,
    *,
    data_dir: str | None = None,
    test_split: str = "test",
    download: bool = False,
) -> ImageData:
    """A TFDS image classification data set (``image`` and ``label`` features) as
    array_record data sources, read without TensorFlow.

    Nothing is downloaded unless ``download=True``; an unknown data set, or one that
    is not prepared in ``data_dir``, raises ``miles_cli.UsageError`` saying how to
    prepare it.
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    except Exception as error:  # TFDS raises its own not-found errors
        raise UsageError(f"unknown TFDS data set {name!r}: {error}") from None
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise UsageError(f"TFDS data set {name!r} has no 'image' and 'label' features")
    if download:

        def prepared():
            ready = tfds.builder(name, data_dir=data_dir, file_format="array_record")
            ready.download_and_prepare(file_format="array_record")
            return ready

        # One process prepares; the others then open the finished data set.
        builder = primary_first(prepared)
    try:
        train, test = (builder.as_data_source(split=s) for s in ("train", test_split))
    except Exception as error:
        raise UsageError(
            f"TFDS data set {name!r} is not prepared in {builder.data_dir} ({error}); prepare "
            f"it with --download (needs network) or `tfds build {name} "
            "--file_format=array_record`"
        ) from None
    image_shape = features["image"].shape
    return ImageData(
        train=_Resized(train, image_size),
        test=_Resized(test, image_size),
        num_classes=features["label"].num_classes,
        channels=image_shape[-1] if image_shape[-1] is not None else 3,
    )


def load_images(
    dataset: str,
    image_size: int,
    *,
    data_dir: str | None = None,
    download: bool = False,
    test_split: str = "test",
) -> ImageData:
    """``digits`` (offline) or a TFDS data set name."""
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    if dataset == DIGITS:
        return load_digits(image_size)
    return load_tfds_images(
        dataset, image_size, data_dir=data_dir, download=download, test_split=test_split
    )
