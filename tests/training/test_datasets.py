"""The shared data sets: digits, TFDS image sets, the Python-topics corpus."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from miles_cli import UsageError
from training.datasets import build_corpus, load_digits, load_images, tokenize, windows
from training.datasets.text import UNKNOWN


def test_digits_are_upsampled_with_a_fixed_split():
    data = load_images("digits", 16)
    assert (len(data.train), len(data.test)) == (1500, 297)
    item = data.train[0]
    assert item["image"].shape == (16, 16, 1) and item["image"].dtype == np.float32
    assert item["image"].min() >= -1.0 and item["image"].max() <= 1.0
    again = load_digits(16)
    np.testing.assert_array_equal(again.test[5]["image"], data.test[5]["image"])
    # Train and test are disjoint: no test image appears in the training split.
    train = {data.train[i]["image"].tobytes() for i in range(len(data.train))}
    assert not any(data.test[i]["image"].tobytes() in train for i in range(len(data.test)))
    with pytest.raises(ValueError, match="image_size"):
        load_images("digits", 4)


def test_tfds_image_sets_are_resized_and_standardised(tmp_path):
    with tfds.testing.mock_data(num_examples=6):
        data = load_images("cifar10", 16, data_dir=str(tmp_path))
        items = [data.test[i] for i in range(len(data.test))]
    assert (data.num_classes, data.channels, len(items)) == (10, 3, 6)
    for item in items:
        assert item["image"].shape == (16, 16, 3) and item["image"].dtype == np.float32
        assert -1.0 <= item["image"].min() <= item["image"].max() <= 1.0
        assert 0 <= item["label"] < 10


def test_tfds_data_sets_that_are_unknown_or_not_prepared_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="is not prepared"):
        load_images("mnist", 28, data_dir=str(tmp_path))
    with pytest.raises(UsageError, match="unknown TFDS data set"):
        load_images("no_such_data_set", 28, data_dir=str(tmp_path))


def test_corpus_vocabulary_and_splits():
    corpus = build_corpus(3, valid_fraction=0.25, documents=["b a, a b a c", "d a b b"])
    # Train "b a , a b" + "d a b", valid "a c" + "b": a and b (3 each) are kept.
    assert corpus.vocab == (UNKNOWN, "a", "b")
    np.testing.assert_array_equal(corpus.train, [2, 1, 0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(corpus.valid, [1, 0, 2])
    assert tokenize("x[0] += 12") == ["x", "[", "0", "]", "+", "=", "12"]
    np.testing.assert_array_equal(windows(np.arange(7), 2), [[0, 1, 2], [3, 4, 5]])


def test_the_python_topics_corpus_is_offline_and_sizable():
    corpus = build_corpus(500)
    assert len(corpus.vocab) == 500 and len(corpus.train) > 90_000 and len(corpus.valid) > 9_000
    assert corpus.train.max() == 499 and 0 < np.mean(corpus.train == 0) < 0.2
    assert build_corpus(500).train.tobytes() == corpus.train.tobytes()


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: build_corpus(1), "vocab_size must be an int >= 2"),
        (lambda: build_corpus(10, valid_fraction=1.0), "valid_fraction must be in"),
        (lambda: windows(np.arange(3), 3), "too few for one window"),
    ],
)
def test_corpus_arguments_are_checked(call, message):
    with pytest.raises(ValueError, match=message):
        call()
