"""Word-level language modelling with BPTT, DSF and truncated BPTT: ``python -m gradients
train-lm``.

``train_lm(config, run_dir)`` trains ``RNNLanguageModel`` on the offline corpus of
``corpus.py`` once per method, with the same seed, initial parameters, batches and
number of steps, so only the backward pass of the recurrences differs:

- ``bptt``: exact backpropagation through time (``feedback="exact"``);
- ``dsf``: diagonal state feedback, ``A = diag(linspace(0, 1, d))`` (``"diagonal"``);
- ``truncated``: no gradient through the recurrence (``"zero"``, fully truncated BPTT).

It leaves in ``run_dir``: ``config.json``, one ``training.fit`` work directory per
method (``metrics.jsonl``, ``checkpoints/``; a finished or interrupted method is
resumed), ``perplexity.png`` (train and validation perplexity of every method against
the step) and ``results.json`` (final perplexities, median milliseconds per step).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

import training
from gradients.cells import CELLS
from gradients.corpus import build_corpus, windows
from gradients.language_model import RNNLanguageModel
from training import runs

METHODS = {"bptt": "exact", "dsf": "diagonal", "truncated": "zero"}
PLOT = "perplexity.png"


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """One comparison run.

    Attributes:
      methods: names from ``METHODS``, trained in this order.
      cell, width, layers: ``RNNLanguageModel`` (the RNN's hidden size is ``width``).
      seq_len: tokens per training window (the BPTT length).
      vocab_size: words kept, ``<unk>`` included.
      batch_size, num_steps, learning_rate, weight_decay, seed: AdamW with warm-up and
        cosine decay; the same for every method.
      eval_every: steps between validation passes.
    """

    methods: tuple[str, ...] = ("bptt", "dsf", "truncated")
    cell: str = "gru"
    width: int = 128
    layers: int = 2
    seq_len: int = 64
    vocab_size: int = 2000
    batch_size: int = 16
    num_steps: int = 800
    learning_rate: float = 3e-3
    weight_decay: float = 0.1
    seed: int = 0
    eval_every: int = 100

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))
        unknown = [m for m in self.methods if m not in METHODS]
        if not self.methods or unknown or len(set(self.methods)) != len(self.methods):
            raise ValueError(
                f"methods must be distinct names from {tuple(METHODS)}, got {self.methods}"
            )
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {tuple(CELLS)}, got {self.cell!r}")
        for name in ("width", "layers", "seq_len", "batch_size", "num_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {self.vocab_size}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0, got {self.eval_every}")

    def as_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


def make_loss_fn(model: RNNLanguageModel):
    """``loss_fn(params, batch, rng) -> mean next-token cross-entropy`` (nats)."""

    def loss_fn(params, batch, rng):
        del rng
        tokens = batch["tokens"]
        logits = model.apply(params, tokens[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    return loss_fn


def _train_method(
    config: LMConfig, method: str, data: dict[str, np.ndarray], workdir, progress: bool
) -> training.FitResult:
    model = RNNLanguageModel(
        vocab_size=config.vocab_size,
        width=config.width,
        layers=config.layers,
        cell=config.cell,
        feedback=METHODS[method],
        feedback_seed=config.seed,
    )
    sample = jnp.zeros((1, config.seq_len), jnp.int32)
    optimizer, state = runs.init_state(config, model, sample, final_fraction=0.05)
    train_step, eval_step = training.make_train_step(make_loss_fn(model), optimizer)
    valid = training.ArraySource(tokens=data["valid"])
    return training.fit(
        state,
        train_step,
        training.make_loader(
            training.ArraySource(tokens=data["train"]), config.batch_size, seed=config.seed
        ),
        num_steps=config.num_steps,
        workdir=workdir,
        eval_step=eval_step,
        eval_data=training.make_eval_loader(valid, 64),
        eval_every=config.eval_every,
        log_every=max(1, min(20, config.num_steps // 10)),
        progress=progress,
        desc=f"{method} ({METHODS[method]})",
    )


def _perplexity_records(histories: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One record per logged point, ``split`` naming the method, for ``plot_curves``."""
    records = []
    for method, history in histories.items():
        for r in history:
            name = "valid perplexity" if r["split"] == "eval" else "train perplexity"
            records.append({"step": r["step"], "split": method, name: math.exp(r["loss"])})
    return records


def train_lm(config: LMConfig, run_dir: str | os.PathLike, *, progress: bool = True):
    """Train every method of ``config`` into ``run_dir`` and return ``results.json``'s dict."""
    run_dir = runs.prepare_run_dir(run_dir, config.as_json())
    corpus = build_corpus(config.vocab_size)
    data = {
        "train": windows(corpus.train, config.seq_len),
        "valid": windows(corpus.valid, config.seq_len),
    }
    if len(data["train"]) < config.batch_size:
        raise ValueError(
            f"batch_size {config.batch_size} exceeds the {len(data['train'])} training windows "
            f"of seq_len {config.seq_len}"
        )
    histories, summary = {}, {}
    for method in config.methods:
        result = _train_method(config, method, data, run_dir / method, progress)
        histories[method] = result.history
        evals = [r for r in result.history if r["split"] == "eval"]
        trains = [r for r in result.history if r["split"] == "train"]
        # Median over the logging windows after the first (which holds the compilation).
        step_ms = [1e3 * config.batch_size / r["examples_per_sec"] for r in trains[1:] or trains]
        summary[method] = {
            "feedback": METHODS[method],
            "valid_perplexity": math.exp(evals[-1]["loss"]),
            "train_perplexity": math.exp(trains[-1]["loss"]),
            "ms_per_step": float(np.median(step_ms)),
        }
    results = {
        "task": "word-level LM on Python's documentation topics",
        "train_tokens": int(data["train"].size),
        "valid_tokens": int(data["valid"].size),
        "vocab_size": config.vocab_size,
        "parameters": runs.count_params(result.state.params),
        "steps": config.num_steps,
        "methods": summary,
        "peak_memory_mb": runs.peak_memory_mb(),
    }
    (run_dir / runs.RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    training.plot_curves(
        _perplexity_records(histories),
        run_dir / PLOT,
        metrics=("train perplexity", "valid perplexity"),
        title=f"{config.cell.upper()} LM, {config.layers} layers x {config.width}, "
        f"seq_len {config.seq_len}: BPTT vs DSF vs truncated",
    )
    return results
