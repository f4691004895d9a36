"""Word-level language modelling with BPTT, DSF and truncated BPTT: ``python -m gradients
train-lm``.

``train_lm(config, run_dir)`` trains ``RNNLanguageModel`` on the offline corpus of
``training.datasets.text`` once per method (each an ``LMConfig`` run of the shared
harness), with the same seed, initial parameters, batches and number of steps, so only
the backward pass of the recurrences differs:

- ``bptt``: exact backpropagation through time (``feedback="exact"``);
- ``dsf``: diagonal state feedback, ``A = diag(linspace(0, 1, d))`` (``"diagonal"``);
- ``truncated``: no gradient through the recurrence (``"zero"``, fully truncated BPTT).

It leaves in ``run_dir``: ``config.json``, one run directory per method
(``metrics.jsonl``, ``checkpoints/``, ``loss_curve.png``, ``results.json``; a finished
or interrupted method is resumed), ``perplexity.png`` (train and validation perplexity
of every method against the step) and ``results.json`` (final perplexities, median
milliseconds per step).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

import training
from gradients.cells import CELLS
from gradients.language_model import RNNLanguageModel
from miles_cli import UsageError, check_config, config_to_dict, option
from training import harness, runs
from training.datasets import build_corpus, windows

METHODS = {"bptt": "exact", "dsf": "diagonal", "truncated": "zero"}
PLOT = "perplexity.png"
EVAL_BATCH = 64


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """One language-model run with one backward method (``training.train_and_evaluate``
    runs it).

    Attributes:
      method: backward pass of the recurrences: bptt, dsf or truncated.
      cell: recurrent cell.
      width: embedding and hidden size.
      layers: stacked recurrent layers.
      seq_len: tokens per training window (the BPTT length).
      vocab_size: words kept, <unk> included.
      batch_size: windows per step.
      num_steps: optimizer steps (AdamW, warm-up, cosine decay).
      learning_rate: peak learning rate.
      weight_decay: AdamW's decoupled weight decay.
      seed: parameter initialisation, batch order and the feedback matrices.
      eval_every: steps between validation passes (0: only at the end).
      checkpoint_every: steps between checkpoints (0: only at the end).
    """

    method: str = option("bptt", choices=tuple(METHODS))
    cell: str = option("gru", choices=tuple(CELLS))
    width: int = option(128, minimum=1)
    layers: int = option(2, minimum=1)
    seq_len: int = option(64, minimum=1)
    vocab_size: int = option(2000, minimum=2)
    batch_size: int = option(16, minimum=1)
    num_steps: int = option(800, minimum=1, flag="--steps")
    learning_rate: float = option(3e-3, positive=True)
    weight_decay: float = option(0.1, minimum=0)
    seed: int = option(0, minimum=0)
    eval_every: int = option(100, minimum=0)
    checkpoint_every: int = option(0, minimum=0)

    def __post_init__(self) -> None:
        check_config(self)

    def build(self, run_dir: Path) -> harness.Experiment:
        """Corpus windows, the RNN language model, AdamW state and the next-token loss."""
        del run_dir
        data = corpus_windows(self.vocab_size, self.seq_len)
        if len(data["train"]) < self.batch_size:
            raise UsageError(
                f"batch_size must be <= the {len(data['train'])} training windows of seq_len "
                f"{self.seq_len}, got {self.batch_size}"
            )
        model = RNNLanguageModel(
            vocab_size=self.vocab_size,
            width=self.width,
            layers=self.layers,
            cell=self.cell,
            feedback=METHODS[self.method],
            feedback_seed=self.seed,
        )
        sample = jnp.zeros((1, self.seq_len), jnp.int32)
        optimizer, state = runs.init_state(self, model, sample, final_fraction=0.05)
        return harness.Experiment(
            model=model,
            state=state,
            optimizer=optimizer,
            loss_fn=make_loss_fn(model),
            train_data=training.make_loader(
                training.ArraySource(tokens=data["train"]), self.batch_size, seed=self.seed
            ),
            eval_data=training.make_eval_loader(
                training.ArraySource(tokens=data["valid"]), EVAL_BATCH
            ),
            desc=f"{self.method} ({METHODS[self.method]})",
            log_every=max(1, min(20, self.num_steps // 10)),
            extras={"tokens": {split: int(a.size) for split, a in data.items()}},
        )

    def report(self, experiment: harness.Experiment, result, run_dir: Path) -> harness.Report:
        """Final train and validation perplexities and the median time per step."""
        del run_dir
        evals = [r for r in result.history if r["split"] == "eval"]
        trains = [r for r in result.history if r["split"] == "train"]
        # Median over the logging windows after the first (which holds the compilation).
        step_ms = [1e3 * self.batch_size / r["examples_per_sec"] for r in trains[1:] or trains]
        return harness.Report(
            fields={
                "method": self.method,
                "feedback": METHODS[self.method],
                "valid_perplexity": math.exp(evals[-1]["loss"]),
                "train_perplexity": math.exp(trains[-1]["loss"]),
                "ms_per_step": float(np.median(step_ms)),
                "train_tokens": experiment.extras["tokens"]["train"],
                "valid_tokens": experiment.extras["tokens"]["valid"],
            },
            title=f"{self.cell.upper()} LM, {self.method} (next-token loss)",
        )


@dataclasses.dataclass(frozen=True)
class CompareConfig(LMConfig):
    """The same language model trained once per method (``train_lm``).

    Attributes:
      methods: backward methods, trained in this order.
    """

    method: str = option("bptt", choices=tuple(METHODS), cli=False)
    methods: tuple[str, ...] = option(tuple(METHODS), choices=tuple(METHODS), nonempty=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods must be distinct, got {self.methods}")

    def run(self, method: str) -> LMConfig:
        """The single-method run of ``method``."""
        fields = {k: v for k, v in config_to_dict(self).items() if k != "methods"}
        return LMConfig(**{**fields, "method": method})


@functools.cache
def corpus_windows(vocab_size: int, seq_len: int) -> dict[str, np.ndarray]:
    """``{"train", "valid"}``: token windows ``[n, seq_len + 1]`` of the corpus."""
    corpus = build_corpus(vocab_size)
    return {"train": windows(corpus.train, seq_len), "valid": windows(corpus.valid, seq_len)}


def make_loss_fn(model: RNNLanguageModel):
    """``loss_fn(params, batch, rng) -> mean next-token cross-entropy`` (nats)."""

    def loss_fn(params, batch, rng):
        del rng
        tokens = batch["tokens"]
        logits = model.apply(params, tokens[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    return loss_fn


def _perplexity_records(histories: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One record per logged point, ``split`` naming the method, for ``plot_curves``."""
    records = []
    for method, history in histories.items():
        for r in history:
            name = "valid perplexity" if r["split"] == "eval" else "train perplexity"
            records.append({"step": r["step"], "split": method, name: math.exp(r["loss"])})
    return records


def train_lm(config: CompareConfig, run_dir: str | os.PathLike, *, progress: bool = True):
    """Train every method of ``config`` into ``run_dir/<method>`` and return the
    comparison written to ``run_dir/results.json``."""
    run_dir = runs.prepare_run_dir(run_dir, config_to_dict(config))
    summary, histories = {}, {}
    for method in config.methods:
        results = harness.train_and_evaluate(
            config.run(method), run_dir / method, progress=progress
        )
        fields = ("feedback", "valid_perplexity", "train_perplexity", "ms_per_step")
        summary[method] = {k: results[k] for k in fields}
        histories[method] = training.read_metrics(run_dir / method / "metrics.jsonl")
    results = {
        "task": "word-level LM on Python's documentation topics",
        "train_tokens": results["train_tokens"],
        "valid_tokens": results["valid_tokens"],
        "vocab_size": config.vocab_size,
        "parameters": results["parameters"],
        "steps": config.num_steps,
        "methods": summary,
        "peak_memory_mb": runs.peak_memory_mb(),
    }
    runs.write_results(run_dir, results)
    training.plot_curves(
        _perplexity_records(histories),
        run_dir / PLOT,
        metrics=("train perplexity", "valid perplexity"),
        title=f"{config.cell.upper()} LM, {config.layers} layers x {config.width}, "
        f"seq_len {config.seq_len}: BPTT vs DSF vs truncated",
    )
    return results
