"""LOCOST on offline documentation summarization: ``python -m seq_models locost-train``.

Two runs of the shared harness, one after the other, in ``run_dir/pretrain`` and
``run_dir/finetune``:

1. gap-sentence denoising on the training documents (``GapSentenceTransform``:
   principal sentences replaced by sentinels, the target is the masked sentences);
2. summarization fine-tuning from the pretrained parameters
   (``SummarizationTransform``: document -> its own first paragraph).

AdamW with T5's inverse-square-root schedule (constant for ``constant_steps``, then
``1 / sqrt(step)``), no weight decay on the SSM parameters (an optax mask), loss =
token cross-entropy on the real target tokens. The fine-tuned model then summarises
``eval_examples`` test documents (beam search) and ``results.json`` reports ROUGE-1/2/L
beside the lead-k and random-sentence baselines on the same documents.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

import training
from miles_cli import UsageError, check_config, config_to_dict, option
from seq_models.gap_sentences import GapSentenceTransform
from seq_models.locost import LOCOST, beam_decoder, locost_config, ssm_parameter_mask
from seq_models.rouge import lead_k, random_sentences, rouge
from seq_models.summarization import SummarizationTransform, load_summarization
from seq_models.tokenizer import Tokenizer, default_tokenizer
from training import harness, runs

STAGES = ("pretrain", "finetune")


@dataclasses.dataclass(frozen=True)
class LOCOSTJobConfig:
    """One LOCOST training stage (``training.train_and_evaluate`` runs it).

    Attributes:
      stage: pretrain (gap sentences) or finetune (summarization).
      preset: model preset (tiny, base).
      dtype: activation dtype, float32 or bfloat16 (parameters stay float32).
      input_length: document tokens per example (longer documents are truncated).
      target_length: summary tokens per example.
      max_train_examples: training documents used (0: all).
      batch_size: examples per step.
      num_steps: optimizer steps of this stage.
      learning_rate: rate of the constant phase of the inverse-square-root schedule.
      constant_steps: steps at the constant rate before the 1 / sqrt(step) decay.
      weight_decay: AdamW decay (never applied to the SSM parameters).
      gap_ratio: share of sentences masked in pretraining.
      seed: initialisation, batch order and dropout.
      eval_every: steps between validation losses (0: only at the end).
      checkpoint_every: steps between checkpoints (0: only at the end).
      eval_examples: test documents summarised for ROUGE (finetune).
      num_beams: beam width of the summaries.
      init_from: run directory of a pretraining stage to start from (finetune).
      data_dir: TFDS data directory (default: $MILES_JAX_DATA_DIR or
        ~/.cache/miles_jax/tensorflow_datasets).
      param_sharding: replicated (every device holds the parameters and AdamW state)
        or fsdp (both split over the devices; same training, less memory per device).
    """

    stage: str = option("finetune", choices=STAGES)
    preset: str = option("tiny", choices=("tiny", "base"))
    dtype: str = option("float32", choices=("float32", "bfloat16"))
    input_length: int = option(1024, minimum=2)
    target_length: int = option(64, minimum=2)
    max_train_examples: int = option(0, minimum=0)
    batch_size: int = option(8, minimum=1)
    num_steps: int = option(1200, minimum=1, flag="--steps")
    learning_rate: float = option(3e-3, positive=True)
    constant_steps: int = option(100, minimum=1)
    weight_decay: float = option(0.01, minimum=0)
    gap_ratio: float = option(0.3, positive=True, maximum=1)
    seed: int = option(0, minimum=0)
    eval_every: int = option(200, minimum=0)
    checkpoint_every: int = option(200, minimum=0)
    eval_examples: int = option(64, minimum=1, identity=False)
    num_beams: int = option(2, minimum=1, identity=False)
    init_from: str | None = option(None)
    data_dir: str | None = option(None, identity=False)
    param_sharding: str = option("replicated", choices=training.PARAM_SHARDINGS, identity=False)

    def __post_init__(self) -> None:
        check_config(self)

    def tokenizer(self) -> Tokenizer:
        return default_tokenizer(self.data_dir)

    def model_config(self, tokenizer: Tokenizer):
        return locost_config(self.preset, vocab_size=tokenizer.vocab_size, dtype=self.dtype)

    def transform(self, tokenizer: Tokenizer):
        if self.stage == "pretrain":
            return GapSentenceTransform(
                tokenizer,
                self.input_length,
                self.target_length,
                ratio=self.gap_ratio,
                seed=self.seed,
            )
        return SummarizationTransform(tokenizer, self.input_length, self.target_length)

    def build(self, run_dir: Path) -> harness.Experiment:
        """Tokenizer, data, LOCOST, AdamW (SSM parameters undecayed) and the loss."""
        del run_dir
        tokenizer = self.tokenizer()
        transform = self.transform(tokenizer)
        train = load_summarization("train", data_dir=self.data_dir)
        if self.max_train_examples:
            train = [train[i] for i in range(min(self.max_train_examples, len(train)))]
        valid = load_summarization("validation", data_dir=self.data_dir)
        model = self.model_config(tokenizer).make()
        optimizer = optax.adamw(
            inverse_sqrt_schedule(self.learning_rate, self.constant_steps),
            weight_decay=self.weight_decay,
            mask=ssm_parameter_mask,
        )
        key = jax.random.key(self.seed)
        sample = jnp.zeros((1, 8), jnp.int32)
        params = runs.init_variables(model, key, sample, sample > 0, sample)["params"]
        state = training.TrainState.create(params, optimizer, jax.random.fold_in(key, 1))
        if self.init_from is not None:
            state = training.TrainState.create(
                pretrained_params(self.init_from, state), optimizer, jax.random.fold_in(key, 1)
            )
        return harness.Experiment(
            model=model,
            state=state,
            optimizer=optimizer,
            loss_fn=sequence_loss(model),
            train_data=training.make_loader(
                train, self.batch_size, seed=self.seed, transform=transform
            ),
            eval_data=training.make_eval_loader(valid, 32, transform=transform),
            desc=f"LOCOST {self.preset} {self.stage}",
            extras={"tokenizer": tokenizer},
        )

    def report(self, experiment: harness.Experiment, result, run_dir: Path) -> harness.Report:
        """Validation loss; after fine-tuning, ROUGE of beam-search summaries of test
        documents against the lead-k and random-sentence baselines."""
        evals = [r for r in result.history if r["split"] == "eval"]
        fields: dict[str, Any] = {
            "stage": self.stage,
            "preset": self.preset,
            "validation_loss": evals[-1]["loss"] if evals else math.nan,
        }
        if self.stage == "finetune":
            fields.update(
                summarization_scores(
                    self,
                    experiment.model,
                    result.state.params,
                    experiment.extras["tokenizer"],
                    Path(run_dir),
                    progress=experiment.progress,
                )
            )
        return harness.Report(fields=fields, title=f"LOCOST {self.preset}: {self.stage}")


def inverse_sqrt_schedule(learning_rate: float, constant_steps: int) -> optax.Schedule:
    """T5's schedule: ``learning_rate`` for ``constant_steps``, then
    ``learning_rate * sqrt(constant_steps / step)``."""

    def schedule(step):
        return learning_rate * jnp.sqrt(constant_steps / jnp.maximum(step, constant_steps))

    return schedule


def sequence_loss(model: LOCOST):
    """``loss_fn(params, batch, rng) -> (mean token cross-entropy, {"token_accuracy"})`` on
    ``{"inputs", "inputs_mask", "targets", "targets_mask"}``; dropout when ``rng`` is given."""

    def loss_fn(params, batch, rng):
        logits = model.apply(
            {"params": params},
            batch["inputs"],
            batch["inputs_mask"],
            batch["targets"],
            deterministic=rng is None,
            rngs=None if rng is None else {"dropout": rng},
        )
        return token_loss(logits, batch["targets"], batch["targets_mask"])

    return loss_fn


def token_loss(
    logits: jax.Array, targets: jax.Array, mask: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean cross-entropy of ``logits [B, T, V]`` on ``targets [B, T]`` where ``mask [B, T]``
    is set, and the token accuracy there."""
    mask = mask.astype(jnp.float32)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    correct = jnp.argmax(logits, -1) == targets
    count = jnp.maximum(mask.sum(), 1.0)
    return jnp.sum(losses * mask) / count, {"token_accuracy": jnp.sum(correct * mask) / count}


def pretrained_params(run_dir: str | os.PathLike, template: training.TrainState) -> Any:
    """The parameters of the pretraining run in ``run_dir`` (its latest checkpoint, read
    into the shape of ``template``, a state of the same model and optimizer)."""
    stage = runs.load_run_config(run_dir).get("stage")
    if stage != "pretrain":
        raise UsageError(f"init_from must be a pretraining run, {run_dir} holds a {stage} run")
    return jax.device_get(runs.restore_state(run_dir, template).params)


@functools.partial(jax.jit, static_argnums=0)
def _encode(model: LOCOST, params, inputs, inputs_mask):
    return model.apply({"params": params}, inputs, inputs_mask, method=LOCOST.encode)


def summarise_batch(
    model: LOCOST,
    params: Any,
    tokenizer: Tokenizer,
    inputs: np.ndarray,
    inputs_mask: np.ndarray,
    *,
    max_length: int,
    num_beams: int,
) -> list[str]:
    """Beam-search summaries of ``inputs: [B, L]`` token ids (with ``inputs_mask``)."""
    inputs, inputs_mask = jnp.asarray(inputs), jnp.asarray(inputs_mask)
    encoded = _encode(model, params, inputs, inputs_mask)
    decode = beam_decoder(model, max_length, num_beams, tokenizer.eos_id, tokenizer.pad_id)
    tokens = np.asarray(decode(params, encoded, inputs_mask))
    return [tokenizer.decode(row.tolist()) for row in tokens]


def summarization_scores(
    config: LOCOSTJobConfig,
    model: LOCOST,
    params: Any,
    tokenizer: Tokenizer,
    run_dir: Path,
    *,
    progress: bool = True,
    batch_size: int = 8,
) -> dict[str, Any]:
    """ROUGE of the model's summaries of the first ``config.eval_examples`` test documents
    and of the lead-3 / random-3 baselines on the same documents; the summaries are
    written to ``run_dir/summaries.jsonl``."""
    test = load_summarization("test", data_dir=config.data_dir)
    count = min(config.eval_examples, len(test))
    examples = [test[i] for i in range(count)]
    transform = SummarizationTransform(tokenizer, config.input_length, config.target_length)
    predictions: list[str] = []
    for start in tqdm(
        range(0, count, batch_size), desc="summarise", disable=not progress, dynamic_ncols=True
    ):
        chunk = examples[start : start + batch_size]
        arrays = [transform(e) for e in chunk]
        pad = batch_size - len(chunk)  # one compilation: the last batch is padded
        inputs = np.stack([a["inputs"] for a in arrays] + [arrays[0]["inputs"]] * pad)
        mask = np.stack([a["inputs_mask"] for a in arrays] + [arrays[0]["inputs_mask"]] * pad)
        out = summarise_batch(
            model,
            params,
            tokenizer,
            inputs,
            mask,
            max_length=config.target_length,
            num_beams=config.num_beams,
        )
        predictions.extend(out[: len(chunk)])
    references = [e["summary"] for e in examples]
    documents = [e["document"] for e in examples]
    if training.is_primary():
        with open(run_dir / "summaries.jsonl", "w", encoding="utf-8") as out:
            for e, p in zip(examples, predictions, strict=True):
                out.write(json.dumps({"id": e["id"], "summary": e["summary"], "model": p}) + "\n")
    return {
        "test_examples": count,
        "rouge": rouge(predictions, references),
        "lead_3_rouge": rouge([lead_k(d, 3) for d in documents], references),
        "random_3_rouge": rouge(
            [random_sentences(d, 3, seed) for seed, d in enumerate(documents)], references
        ),
    }


def train_locost(
    config: LOCOSTJobConfig,
    run_dir: str | os.PathLike,
    *,
    pretrain_steps: int,
    progress: bool = True,
) -> dict[str, Any]:
    """Pretrain ``pretrain_steps`` steps (skipped when 0) in ``run_dir/pretrain``, then
    fine-tune ``config`` from it in ``run_dir/finetune``; returns the fine-tuning results
    (also written to ``run_dir/results.json``)."""
    run_dir = runs.prepare_run_dir(
        run_dir,
        {**config_to_dict(config, identity_only=True), "pretrain_steps": pretrain_steps},
    )
    init_from = None
    if pretrain_steps:
        pretrain = dataclasses.replace(
            config, stage="pretrain", num_steps=pretrain_steps, init_from=None
        )
        harness.train_and_evaluate(pretrain, run_dir / "pretrain", progress=progress)
        init_from = str(run_dir / "pretrain")
    finetune = dataclasses.replace(config, stage="finetune", init_from=init_from)
    results = harness.train_and_evaluate(finetune, run_dir / "finetune", progress=progress)
    runs.write_results(run_dir, results)
    return results
