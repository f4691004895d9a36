"""Where generated data sets and trained tokenizers are cached (never in the repository)."""

import os

DATA_DIR_ENV = "MILES_JAX_DATA_DIR"


def default_data_dir() -> str:
    """TFDS data directory: ``$MILES_JAX_DATA_DIR`` if set and non-empty, else
    ``~/.cache/miles_jax/tensorflow_datasets``."""
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return os.path.expanduser(from_env)
    return os.path.join(os.path.expanduser("~"), ".cache", "miles_jax", "tensorflow_datasets")
