"""Entity tracking with chain-and-causal attention: ``python -m seq_models chacal-train``.

One decoder-only model for both attentions, so the comparison changes nothing but the
attention: every statement's fields are embedded and summed, a learned position
embedding is added, then one pre-RMSNorm layer per entry of ``attention``,

    h = h + Attn(RMSNorm(h))        "standard": causal softmax attention (gamma = 0)
                                    "chain": chain-and-causal attention (learned gamma)
    h = h + FF(RMSNorm(h))          T5's gated-GELU feed-forward

and a linear head on the final RMSNorm. ``("standard",) * L`` is an ``L``-layer
transformer, ``("chain",)`` one chain-and-causal layer, ``("standard", "chain")`` the
1(+1) model.

Tasks (``seq_models.entity_tracking``), trained at every position:

- ``tracking``: the value of each statement's variable (softmax over the values);
  evaluated at the last statement for every number ``n`` of state changes of its chain
  in ``0 .. max_changes`` (``accuracy_by_changes`` and ``accuracy_by_changes.png``);
- ``boxes``: the contents of each statement's box (one sigmoid per object); evaluated
  by exact match of the final query, beside the exact match of always answering "empty".

AdamW with warm-up and cosine decay (``training.runs.init_state``); ``results.json``
also holds the median milliseconds per training step and the learned gammas.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import training
from miles_cli import check_config, option
from seq_models.chain_causal import ChainCausalAttention, learned_gamma
from seq_models.entity_tracking import BoxesSource, TrackingSource
from seq_models.t5 import GatedGeluFeedForward, RMSNorm, _check_float_dtype, _check_int
from training import harness, runs

TASKS = ("tracking", "boxes")
ATTENTIONS = ("standard", "chain")
PLOT = "accuracy_by_changes.png"
EVAL_BATCH = 256
# Example streams of the sources: training, validation, then one test stream per task
# setting (per number of changes for tracking).
TRAIN_STREAM, VALID_STREAM, TEST_STREAM = 0, 1, 2


class StatementDecoder(nn.Module):
    """Decoder-only model over statements of categorical fields.

    ``__call__(tokens int [B, T, F]) -> logits float32 [B, T, num_outputs]``; position
    ``t`` depends only on statements ``<= t``.

    Attributes:
      vocab_sizes: categories of each of the ``F`` fields (one embedding table each).
      num_outputs: logits per position.
      attention: one entry per layer, "standard" or "chain".
      max_length: most statements (size of the position embedding).
      d_model, num_heads, head_dim, d_ff: widths.
      strict: strict (True) or full chain-and-causal form.
      gamma: fixed gamma of the chain layers (None: learned per head).
      dtype: activation dtype.
    """

    vocab_sizes: tuple[int, ...]
    num_outputs: int
    attention: tuple[str, ...]
    max_length: int
    d_model: int = 64
    num_heads: int = 4
    head_dim: int = 16
    d_ff: int = 128
    strict: bool = True
    gamma: float | None = None
    dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        for size in self.vocab_sizes:
            _check_int(size, "vocab_sizes")
        for name in ("num_outputs", "max_length", "d_model", "num_heads", "head_dim", "d_ff"):
            _check_int(getattr(self, name), name)
        if not self.attention or any(kind not in ATTENTIONS for kind in self.attention):
            raise ValueError(
                f"attention must be a non-empty tuple of {ATTENTIONS}, got {self.attention!r}"
            )
        _check_float_dtype(self.dtype, "dtype")
        super().__post_init__()

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        shape = (self.max_length, len(self.vocab_sizes))
        if jnp.ndim(tokens) != 3 or tokens.shape[2] != shape[1] or tokens.shape[1] > shape[0]:
            raise ValueError(
                f"tokens must have shape [batch, length <= {shape[0]}, {shape[1]}], "
                f"got {jnp.shape(tokens)}"
            )
        x = sum(
            nn.Embed(size, self.d_model, name=f"embed_{i}")(tokens[..., i])
            for i, size in enumerate(self.vocab_sizes)
        )
        position = self.param(
            "position", nn.initializers.normal(0.02), (self.max_length, self.d_model)
        )
        x = (x + position[: tokens.shape[1]]).astype(self.dtype)
        for i, kind in enumerate(self.attention):
            attend = ChainCausalAttention(
                self.num_heads,
                self.head_dim,
                gamma=0.0 if kind == "standard" else self.gamma,
                strict=self.strict,
                dtype=self.dtype,
                name=f"attention_{i}",
            )
            x = x + attend(RMSNorm(name=f"attention_norm_{i}")(x))
            feed_forward = GatedGeluFeedForward(
                self.d_model, self.d_ff, dtype=self.dtype, name=f"ffn_{i}"
            )
            x = x + feed_forward(RMSNorm(name=f"ffn_norm_{i}")(x))
        x = RMSNorm(name="final_norm")(x)
        return nn.Dense(self.num_outputs, name="head")(x).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class ChaCALConfig:
    """One entity-tracking run (``training.train_and_evaluate`` runs it).

    Attributes:
      task: tracking (chains of reassignments) or boxes (put / remove / move).
      attention: the layers, each standard or chain (e.g. standard standard: a 2-layer
        transformer; chain: one chain-and-causal layer; standard chain: 1(+1)).
      strict: strict chain-and-causal form (else the full form).
      gamma: fixed gamma of the chain layers (default: learned per head).
      d_model: model width.
      num_heads: attention heads.
      head_dim: width of each head.
      d_ff: feed-forward hidden width.
      length: statements per example.
      max_changes: tracking: most state changes of a chain (training draws 0 ..
        max_changes for the target chain; evaluation covers each).
      num_chains: tracking: chains per example (the target and its distractors).
      num_variables: tracking: variable names (at least length).
      num_values: tracking: values.
      num_boxes: boxes: boxes.
      num_objects: boxes: objects.
      train_examples: generated training examples (repeated after that many).
      batch_size: examples per step.
      num_steps: optimizer steps (AdamW, warm-up, cosine decay).
      learning_rate: peak learning rate.
      weight_decay: AdamW's decoupled weight decay.
      dtype: activation dtype (the attention solve is float32 either way).
      seed: initialisation, batch order and data.
      eval_examples: test examples (per number of changes for tracking).
      eval_every: steps between validation passes (0: only at the end).
      checkpoint_every: steps between checkpoints (0: only at the end).
    """

    task: str = option("tracking", choices=TASKS)
    attention: tuple[str, ...] = option(("chain",), choices=ATTENTIONS, nonempty=True)
    strict: bool = option(True)
    gamma: float | None = option(None, minimum=0, below=1)
    d_model: int = option(64, minimum=1)
    num_heads: int = option(4, minimum=1)
    head_dim: int = option(16, minimum=1)
    d_ff: int = option(128, minimum=1)
    length: int = option(32, minimum=2)
    max_changes: int = option(15, minimum=0)
    num_chains: int = option(4, minimum=2)
    num_variables: int = option(64, minimum=2)
    num_values: int = option(8, minimum=2)
    num_boxes: int = option(5, minimum=2)
    num_objects: int = option(8, minimum=1)
    train_examples: int = option(1_000_000, minimum=1)
    batch_size: int = option(32, minimum=1)
    num_steps: int = option(1500, minimum=1, flag="--steps")
    learning_rate: float = option(3e-3, positive=True)
    weight_decay: float = option(0.01, minimum=0)
    dtype: str = option("float32", choices=("float32", "bfloat16"))
    seed: int = option(0, minimum=0)
    eval_examples: int = option(256, minimum=1, identity=False)
    eval_every: int = option(0, minimum=0)
    checkpoint_every: int = option(0, minimum=0)

    def __post_init__(self) -> None:
        check_config(self)
        if self.task == "tracking":
            if self.max_changes > self.length - self.num_chains:
                raise ValueError(
                    f"max_changes must be <= length - num_chains = "
                    f"{self.length - self.num_chains}, got {self.max_changes}"
                )
            if self.num_variables < self.length:
                raise ValueError(
                    f"num_variables must be >= length = {self.length}, got {self.num_variables}"
                )

    def source(self, num_examples: int, stream: int, num_changes: Any = None):
        """The task's source of ``num_examples`` examples in ``stream`` (tracking:
        ``num_changes`` fixed, default drawn from ``0 .. max_changes``)."""
        common = dict(seed=self.seed, stream=stream, length=self.length)
        if self.task == "boxes":
            return BoxesSource(
                num_examples, num_boxes=self.num_boxes, num_objects=self.num_objects, **common
            )
        return TrackingSource(
            num_examples,
            num_changes=(0, self.max_changes) if num_changes is None else num_changes,
            num_chains=self.num_chains,
            num_variables=self.num_variables,
            num_values=self.num_values,
            **common,
        )

    def model(self) -> StatementDecoder:
        source = self.source(1, TRAIN_STREAM)
        return StatementDecoder(
            vocab_sizes=source.vocab_sizes,
            num_outputs=self.num_objects if self.task == "boxes" else self.num_values,
            attention=self.attention,
            max_length=self.length,
            d_model=self.d_model,
            num_heads=self.num_heads,
            head_dim=self.head_dim,
            d_ff=self.d_ff,
            strict=self.strict,
            gamma=self.gamma,
            dtype=self.dtype,
        )

    def build(self, run_dir: Path) -> harness.Experiment:
        """Generated data, the statement decoder, AdamW state and the per-position loss."""
        del run_dir
        model = self.model()
        sample = jnp.zeros((1, self.length, len(model.vocab_sizes)), jnp.int32)
        optimizer, state = runs.init_state(self, model, sample)
        train = self.source(self.train_examples, TRAIN_STREAM)
        valid = self.source(self.eval_examples, VALID_STREAM)
        return harness.Experiment(
            model=model,
            state=state,
            optimizer=optimizer,
            loss_fn=make_loss_fn(model, self.task),
            train_data=training.make_loader(train, self.batch_size, seed=self.seed),
            eval_data=training.make_eval_loader(valid, EVAL_BATCH),
            desc=f"{self.task}: {'+'.join(self.attention)}",
            log_every=max(1, min(50, self.num_steps // 10)),
        )

    def report(self, experiment: harness.Experiment, result, run_dir: Path) -> harness.Report:
        """Tracking: last-statement accuracy for each number of changes (and its plot);
        boxes: query exact match beside the empty-answer baseline. Both: the median time
        per step and the learned gammas."""
        params = result.state.params
        predict = make_predict(experiment.model)
        trains = [r for r in result.history if r["split"] == "train"]
        # Median over the logging windows after the first (which holds the compilation).
        step_ms = [1e3 * self.batch_size / r["examples_per_sec"] for r in trains[1:] or trains]
        fields: dict[str, Any] = {
            "task": self.task,
            "attention": list(self.attention),
            "ms_per_step": float(np.median(step_ms)),
            "gammas": learned_gammas(params),
        }
        if self.task == "tracking":
            changes = range(self.max_changes + 1)
            accuracy = {}
            for n in changes:
                source = self.source(self.eval_examples, TEST_STREAM + n, num_changes=n)
                batch = stack(source)
                logits = predict(params, batch["tokens"])[:, -1]
                accuracy[n] = float(np.mean(np.argmax(logits, -1) == batch["labels"][:, -1]))
            fields["accuracy_by_changes"] = accuracy
            fields["mean_accuracy"] = float(np.mean(list(accuracy.values())))
            training.plot_lines(
                {"+".join(self.attention): (list(changes), list(accuracy.values()))},
                Path(run_dir) / PLOT,
                xlabel="state changes n",
                ylabel="accuracy (last statement)",
                ylim=(0, 1.02),
                title=f"tracking, {self.num_values} values",
            )
        else:
            batch = stack(self.source(self.eval_examples, TEST_STREAM))
            logits = predict(params, batch["tokens"])[:, -1]
            answer = logits > 0
            truth = batch["labels"][:, -1].astype(bool)
            fields["query_exact_match"] = float(np.mean(np.all(answer == truth, -1)))
            fields["empty_answer_exact_match"] = float(np.mean(~truth.any(-1)))
        return harness.Report(
            fields=fields,
            title=f"{self.task}: {'+'.join(self.attention)}",
            curves=("loss", "accuracy"),
        )


def stack(source) -> dict[str, np.ndarray]:
    """Every example of ``source`` stacked into arrays with a leading example axis."""
    items = [source[i] for i in range(len(source))]
    return {name: np.stack([item[name] for item in items]) for name in items[0]}


def make_predict(model: StatementDecoder):
    """``predict(variables, tokens [N, T, F]) -> logits [N, T, O]`` (NumPy), in batches of
    ``EVAL_BATCH`` (the last one padded, so there is one compilation)."""
    apply = jax.jit(model.apply)

    def predict(params, tokens: np.ndarray) -> np.ndarray:
        count = len(tokens)
        pad = -count % EVAL_BATCH if count > EVAL_BATCH else 0
        padded = np.concatenate([tokens, np.repeat(tokens[:1], pad, axis=0)])
        size = min(EVAL_BATCH, count)
        out = [apply(params, padded[i : i + size]) for i in range(0, len(padded), size)]
        return np.concatenate(jax.device_get(out))[:count]

    return predict


def make_loss_fn(model: StatementDecoder, task: str):
    """``loss_fn(params, batch, rng) -> (loss, metrics)`` over every position.

    tracking: softmax cross-entropy of the value; ``accuracy`` (every position) and
    ``last_accuracy`` (last statement). boxes: sigmoid cross-entropy per object;
    ``accuracy`` (exact match at every position) and ``query_exact_match`` (last).
    """

    def loss_fn(params, batch, rng):
        del rng
        logits = model.apply(params, batch["tokens"])
        labels = batch["labels"]
        if task == "tracking":
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            correct = jnp.argmax(logits, -1) == labels
            return loss, {"accuracy": correct.mean(), "last_accuracy": correct[:, -1].mean()}
        loss = optax.sigmoid_binary_cross_entropy(logits, labels.astype(jnp.float32)).mean()
        exact = jnp.all((logits > 0) == (labels > 0), axis=-1)
        return loss, {"accuracy": exact.mean(), "query_exact_match": exact[:, -1].mean()}

    return loss_fn


def learned_gammas(variables: Any) -> dict[str, list[float]]:
    """``{layer: [gamma per head]}`` of the chain layers with a learned gamma."""
    return {
        name: [float(g) for g in learned_gamma(layer["gamma_logit"])]
        for name, layer in variables["params"].items()
        if isinstance(layer, dict) and "gamma_logit" in layer
    }


def default_run_dir(config: ChaCALConfig) -> str:
    """``runs/chacal-<task>-<layers>``, e.g. ``runs/chacal-tracking-chain``."""
    return f"runs/chacal-{config.task}-{'-'.join(config.attention)}"


def chacal_train(config: ChaCALConfig, run_dir: str, progress: bool = True) -> str:
    """Train and evaluate ``config`` in ``run_dir``; a summary of ``results.json``."""
    results = harness.train_and_evaluate(config, run_dir, progress=progress)
    head = (
        f"{config.task}, layers {'+'.join(config.attention)}: {results['parameters']:,} "
        f"parameters, {results['steps']} steps, {results['ms_per_step']:.1f} ms/step"
    )
    if config.task == "tracking":
        accuracy = results["accuracy_by_changes"]
        body = "accuracy by state changes n: " + ", ".join(
            f"{n}: {a:.2f}" for n, a in accuracy.items()
        )
    else:
        body = (
            f"query exact match {results['query_exact_match']:.3f} (always empty: "
            f"{results['empty_answer_exact_match']:.3f})"
        )
    gammas = "; ".join(
        f"{name} gamma {', '.join(f'{g:.2f}' for g in values)}"
        for name, values in results["gammas"].items()
    )
    return "\n".join(line for line in (head, body, gammas, f"run directory {run_dir}") if line)
