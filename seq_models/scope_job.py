"""SCOPE on the data-to-text task: ``python -m seq_models scope``.

Three runs of the shared harness, then an evaluation, under one run directory:

1. ``lm``: the unconditional LM, trained on the training texts with an empty prompt;
2. ``sft``: fine-tuned from it on the first half ``D1`` of the training pairs
   (record -> text);
3. ``dpo-alpha<alpha>``: for every pair of the second half ``D2``, one unfaithful text by
   noisy decoding (``seq_models.generation.noisy_sample``: with probability ``alpha`` per
   step and sequence the unconditional LM picks the next token, otherwise the SFT model;
   temperature 0.6, top-p 0.9, the first 2 tokens conditional), then DPO (sigmoid loss,
   ``beta``) from the SFT model with the gold text as chosen and the noisy one as
   rejected. The reference model is the SFT model, frozen: its log-probabilities of
   every pair are computed once before training and stored with the pair. One epoch,
   linear schedule with 10% warm-up, no dropout;
4. evaluation on test records, greedy decoding for all three: the SFT model, SFT +
   SCOPE, and context-aware decoding (CAD) of the SFT model against the LM,
   ``(1 + a) log p(y | x) - a log p(y)``. Reported: hallucination rate, hallucinated
   outputs, omission rate (``seq_models.faithfulness.value_scores``), PARENT-style
   precision/recall/F1 and ROUGE against the references.

Two model kinds with the same pipeline: ``encoder-decoder`` (the ``tiny`` LOCOST; the
record is the encoder input, an empty prompt is the EOS token alone) and
``decoder-only`` (``seq_models.decoder_lm.DecoderLM`` of the same width and depth; the
prompt is the record followed by EOS, then the text).

Examples become arrays (``PairTransform``): the prompt left-padded to
``prompt_length`` (ending with EOS), the text ``targets`` right-padded to
``target_length`` (ending with EOS) and, for the decoder-only model, ``sequence`` =
prompt + text right-padded, with ``sequence_mask`` on the text tokens.
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
from seq_models.data_to_text import DataToTextSource
from seq_models.decoder_lm import DecoderLMConfig, prefill
from seq_models.decoder_lm import step_fn as decoder_lm_step
from seq_models.faithfulness import parent_scores, value_scores
from seq_models.generation import greedy_search, noisy_sample
from seq_models.locost import LOCOST, locost_config, ssm_parameter_mask
from seq_models.locost import step_fn as locost_step
from seq_models.locost_job import token_loss
from seq_models.preference import dpo_loss, sequence_logps
from seq_models.rouge import rouge
from seq_models.tokenizer import Tokenizer, fit_to_length, train_tokenizer
from training import harness, runs

STAGES = ("lm", "sft", "dpo")
MODELS = ("encoder-decoder", "decoder-only")
TOKENIZER_FILE = "tokenizer.model"
TOKENIZER_EXAMPLES = 4000
# The scores shown in tables, with their column labels.
TABLE_COLUMNS = (
    ("hallucination_rate", "hallucinated values"),
    ("hallucinated_outputs", "outputs with one"),
    ("omission_rate", "omitted values"),
    ("parent_precision", "PARENT P"),
    ("parent_recall", "PARENT R"),
    ("parent_f1", "PARENT F1"),
    ("rouge1", "ROUGE-1"),
    ("rougeL", "ROUGE-L"),
)


# ----------------------------------------------------------------------------- arrays


class PairTransform:
    """Examples ``{"record", "text"}`` (or ``{"record", "chosen", "rejected"}``) -> arrays.

    Args:
      tokenizer: the SentencePiece tokenizer.
      prompt_length, target_length: ``P`` and ``T``.
      unconditional: prompts are empty (the EOS token alone) whatever the record.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        prompt_length: int,
        target_length: int,
        *,
        unconditional: bool = False,
    ):
        self.tokenizer = tokenizer
        self.prompt_length, self.target_length = prompt_length, target_length
        self.unconditional = unconditional

    def prompt(self, record: str) -> tuple[np.ndarray, np.ndarray]:
        """``(ids int32 [P], mask bool [P])``: the record's tokens and EOS, left-padded
        (the record is cut to fit; EOS alone when unconditional)."""
        tok = self.tokenizer
        ids = [] if self.unconditional else tok.encode(record)[: self.prompt_length - 1]
        ids = [*ids, tok.eos_id]
        pad = self.prompt_length - len(ids)
        mask = np.arange(self.prompt_length) >= pad
        return np.array([tok.pad_id] * pad + ids, np.int32), mask

    def response(self, prompt: np.ndarray, prompt_mask: np.ndarray, text: str, prefix: str = ""):
        """The text as ``targets``/``targets_mask`` and, after the real prompt tokens, as
        ``sequence``/``sequence_mask`` (``[P + T]``, the mask on the text tokens)."""
        tok = self.tokenizer
        ids = tok.encode(text) if text.strip() else []  # an empty text is EOS alone
        targets, targets_mask = fit_to_length(
            ids, self.target_length, eos_id=tok.eos_id, pad_id=tok.pad_id
        )
        real = [*prompt[prompt_mask].tolist(), *targets[targets_mask].tolist()]
        sequence = np.full(self.prompt_length + self.target_length, tok.pad_id, np.int32)
        sequence[: len(real)] = real
        sequence_mask = np.zeros(len(sequence), bool)
        sequence_mask[int(prompt_mask.sum()) : len(real)] = True
        return {
            f"{prefix}targets": targets,
            f"{prefix}targets_mask": targets_mask,
            f"{prefix}sequence": sequence,
            f"{prefix}sequence_mask": sequence_mask,
        }

    def __call__(self, example: dict[str, Any]) -> dict[str, np.ndarray]:
        prompt, prompt_mask = self.prompt(example["record"])
        arrays = {"prompt": prompt, "prompt_mask": prompt_mask}
        if "text" in example:
            return arrays | self.response(prompt, prompt_mask, example["text"])
        for side in ("chosen", "rejected"):
            arrays |= self.response(prompt, prompt_mask, example[side], f"{side}_")
        return arrays


def stack(examples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


# ----------------------------------------------------------------------------- models


def response_logits(model: Any, params: Any, batch: dict, prefix: str = "", rng=None):
    """``(logits [B, T', V], labels [B, T'], mask [B, T'])`` of the response named by
    ``prefix`` (teacher forcing; dropout when ``rng`` is given)."""
    kwargs = {"deterministic": rng is None, "rngs": None if rng is None else {"dropout": rng}}
    if isinstance(model, LOCOST):
        targets = batch[f"{prefix}targets"]
        logits = model.apply(
            {"params": params}, batch["prompt"], batch["prompt_mask"], targets, **kwargs
        )
        return logits, targets, batch[f"{prefix}targets_mask"]
    sequence = batch[f"{prefix}sequence"]
    logits = model.apply({"params": params}, sequence[:, :-1], **kwargs)
    return logits, sequence[:, 1:], batch[f"{prefix}sequence_mask"][:, 1:]


@functools.cache
def step_function(model: Any):
    """The generation step function of ``model`` (one object per model: one compilation)."""
    step = locost_step if isinstance(model, LOCOST) else decoder_lm_step
    return functools.partial(step, model=model)


@functools.partial(jax.jit, static_argnames=("model", "max_length"))
def _locost_start(model: LOCOST, params, prompt, prompt_mask, max_length: int):
    _, variables = model.apply(
        {"params": params},
        prompt,
        prompt_mask,
        max_length,
        method=LOCOST.init_cache,
        mutable=["cache"],
    )
    return variables["cache"], jnp.zeros(prompt.shape[:1], jnp.int32)


def generation_start(model: Any, params: Any, prompt, prompt_mask, max_length: int):
    """``(cache, start_tokens [B])`` for generating ``max_length`` tokens after the prompts."""
    if isinstance(model, LOCOST):
        return _locost_start(
            model, params, jnp.asarray(prompt), jnp.asarray(prompt_mask), max_length
        )
    return prefill(model, params, prompt, prompt_mask, max_length)


def cad_step(params, tokens, caches, *, step, weight: float):
    """Context-aware decoding: ``(1 + a) log p(. | x, y<t) - a log p(. | y<t)`` from the
    conditional model (``params[0]``, ``caches[0]``) and the unconditional one."""
    cond, cond_cache = step(params[0], tokens, caches[0])
    uncond, uncond_cache = step(params[1], tokens, caches[1])
    logits = (1 + weight) * jax.nn.log_softmax(cond.astype(jnp.float32)) - weight * (
        jax.nn.log_softmax(uncond.astype(jnp.float32))
    )
    return logits, (cond_cache, uncond_cache)


# ----------------------------------------------------------------------------- the job


@dataclasses.dataclass(frozen=True)
class ScopeConfig:
    """One SCOPE stage (``training.train_and_evaluate`` runs it).

    Attributes:
      stage: lm (unconditional), sft (D1) or dpo (D2 with noisy negatives).
      model: encoder-decoder (tiny LOCOST) or decoder-only (a T5-style decoder LM).
      train_examples: generated training pairs; D1 is the first half, D2 the second.
      validation_examples: generated validation pairs (losses during training).
      test_examples: test records decoded by the final evaluation.
      data_seed: seed of the generated data.
      prompt_length: prompt tokens (the record and EOS, left-padded).
      target_length: text tokens (with EOS).
      vocab_size: SentencePiece vocabulary of the tokenizer.
      batch_size: examples (or pairs) per step.
      num_steps: optimizer steps of this stage.
      learning_rate: peak learning rate.
      weight_decay: AdamW decay (never on SSM parameters).
      alpha: noisy decoding's probability of an unconditional step (dpo).
      temperature: sampling temperature of the noisy decoding.
      top_p: nucleus of the noisy decoding.
      beta: DPO's inverse temperature.
      cad_weight: CAD's ``a`` in the evaluation.
      seed: initialisation, batch order, dropout and noisy decoding.
      eval_every: steps between validation losses (0: only at the end).
      checkpoint_every: steps between checkpoints (0: only at the end).
      init_from: run directory to start from (sft: the lm run; dpo: the sft run).
      lm_from: the lm run whose model makes the noisy negatives (dpo).
      tokenizer_path: the SentencePiece model (trained by ``run_scope`` when missing).
    """

    stage: str = option("sft", choices=STAGES, cli=False)
    model: str = option("encoder-decoder", choices=MODELS)
    train_examples: int = option(8000, minimum=4)
    validation_examples: int = option(128, minimum=1)
    test_examples: int = option(200, minimum=1, identity=False)
    data_seed: int = option(0, minimum=0)
    prompt_length: int = option(64, minimum=2)
    target_length: int = option(64, minimum=2)
    vocab_size: int = option(256, minimum=16)
    batch_size: int = option(32, minimum=1)
    num_steps: int = option(600, minimum=0, flag="--steps", cli=False)
    learning_rate: float = option(3e-3, positive=True)
    weight_decay: float = option(0.01, minimum=0)
    alpha: float = option(0.5, minimum=0, maximum=1)
    temperature: float = option(0.6, positive=True)
    top_p: float = option(0.9, positive=True, maximum=1)
    beta: float = option(0.1, positive=True)
    cad_weight: float = option(0.5, minimum=0, identity=False)
    seed: int = option(0, minimum=0)
    eval_every: int = option(200, minimum=0)
    checkpoint_every: int = option(200, minimum=0)
    init_from: str | None = option(None, cli=False)
    lm_from: str | None = option(None, cli=False)
    tokenizer_path: str | None = option(None, cli=False, identity=False)

    def __post_init__(self) -> None:
        check_config(self)

    # -- pieces

    def tokenizer(self) -> Tokenizer:
        if self.tokenizer_path is None or not os.path.isfile(self.tokenizer_path):
            raise UsageError(f"no tokenizer at {self.tokenizer_path} (run_scope trains it)")
        return Tokenizer(self.tokenizer_path)

    def make_model(self, tokenizer: Tokenizer, *, dropout: float = 0.1) -> Any:
        if self.model == "encoder-decoder":
            return locost_config("tiny", vocab_size=tokenizer.vocab_size, dropout=dropout).make()
        tiny = locost_config("tiny")
        return DecoderLMConfig(
            vocab_size=tokenizer.vocab_size,
            d_model=tiny.d_model,
            d_ff=tiny.d_ff,
            num_layers=tiny.num_encoder_layers + tiny.num_decoder_layers,
            num_heads=tiny.num_heads,
            head_dim=tiny.head_dim,
            dropout=dropout,
        ).make()

    def source(self, split: str) -> DataToTextSource:
        size = {
            "train": self.train_examples,
            "validation": self.validation_examples,
            "test": self.test_examples,
        }[split]
        return DataToTextSource(split, size, seed=self.data_seed)

    def half(self, which: int) -> list[dict[str, Any]]:
        """D1 (``which = 0``) or D2 (``which = 1``) of the training pairs."""
        source = self.source("train")
        middle = len(source) // 2
        indices = range(middle) if which == 0 else range(middle, len(source))
        return [source[i] for i in indices]

    def transform(self, tokenizer: Tokenizer) -> PairTransform:
        return PairTransform(
            tokenizer, self.prompt_length, self.target_length, unconditional=self.stage == "lm"
        )

    def optimizer(self, num_steps: int) -> optax.GradientTransformation:
        if self.stage == "dpo":
            warmup = max(1, num_steps // 10)
            schedule = optax.join_schedules(
                [
                    optax.linear_schedule(0.0, self.learning_rate, warmup),
                    optax.linear_schedule(self.learning_rate, 0.0, max(1, num_steps - warmup)),
                ],
                [warmup],
            )
        else:
            schedule = optax.warmup_cosine_decay_schedule(
                0.0, self.learning_rate, min(100, num_steps // 10), max(num_steps, 1)
            )
        mask = ssm_parameter_mask if self.model == "encoder-decoder" else None
        return optax.adamw(schedule, weight_decay=self.weight_decay, mask=mask)

    def initial_state(self, model: Any, optimizer) -> training.TrainState:
        key = jax.random.key(self.seed)
        prompt = jnp.zeros((1, self.prompt_length), jnp.int32)
        if isinstance(model, LOCOST):
            targets = jnp.zeros((1, self.target_length), jnp.int32)
            params = runs.init_variables(model, key, prompt, prompt >= 0, targets)["params"]
        else:
            params = runs.init_variables(model, key, prompt)["params"]
        return training.TrainState.create(params, optimizer, jax.random.fold_in(key, 1))

    # -- the harness interface

    def build(self, run_dir: Path) -> harness.Experiment:
        if self.stage == "dpo" and (self.init_from is None or self.lm_from is None):
            raise UsageError("a dpo stage needs init_from (the sft run) and lm_from (the lm run)")
        if self.num_steps == 0:
            raise UsageError(f"num_steps must be >= 1 for the {self.stage} stage, got 0")
        tokenizer = self.tokenizer()
        model = self.make_model(tokenizer, dropout=0.0 if self.stage == "dpo" else 0.1)
        optimizer = self.optimizer(self.num_steps)
        state = self.initial_state(model, optimizer)
        if self.init_from is not None:
            params = trained_params(self.init_from, self, state.params)
            state = training.TrainState.create(params, optimizer, state.rng)
        transform = self.transform(tokenizer)
        valid = [self.source("validation")[i] for i in range(self.validation_examples)]
        if self.stage == "dpo":
            return self._build_dpo(run_dir, tokenizer, model, optimizer, state, valid)
        train = self.half(0) if self.stage == "sft" else self.half(0) + self.half(1)
        return harness.Experiment(
            model=model,
            state=state,
            optimizer=optimizer,
            loss_fn=language_model_loss(model),
            train_data=training.make_loader(
                train, self.batch_size, seed=self.seed, transform=transform
            ),
            eval_data=training.make_eval_loader(valid, 64, transform=transform),
            desc=f"SCOPE {self.model} {self.stage}",
            extras={"tokenizer": tokenizer},
        )

    def _build_dpo(self, run_dir, tokenizer, model, optimizer, state, valid):
        lm_params = trained_params(self.lm_from, self, state.params)
        pairs = {}
        for split, examples in (("train", self.half(1)), ("validation", valid)):
            pairs[split] = preference_pairs(
                self,
                model,
                state.params,
                lm_params,
                tokenizer,
                examples,
                Path(run_dir) / f"pairs_{split}.jsonl",
            )
        return harness.Experiment(
            model=model,
            state=state,
            optimizer=optimizer,
            loss_fn=dpo_loss_fn(model, self.beta),
            train_data=training.make_loader(
                training.ArraySource(**pairs["train"]), self.batch_size, seed=self.seed
            ),
            eval_data=training.make_eval_loader(training.ArraySource(**pairs["validation"]), 64),
            desc=f"SCOPE {self.model} dpo (alpha {self.alpha:g})",
            extras={"tokenizer": tokenizer},
        )

    def report(self, experiment: harness.Experiment, result, run_dir: Path) -> harness.Report:
        evals = [r for r in result.history if r["split"] == "eval"]
        fields = {"stage": self.stage, "model": self.model}
        fields |= {k: v for k, v in (evals[-1] if evals else {}).items() if k != "split"}
        curves = ("loss", "reward_margin") if self.stage == "dpo" else ("loss",)
        return harness.Report(
            fields=fields,
            title=f"SCOPE {self.model}: {self.stage}",
            curves=curves,
            log_scale=self.stage != "dpo",
        )


# Fields that only the dpo stage reads: the lm and sft stages keep their defaults, so that
# one lm and one sft run serve every preference-training setting.
DPO_FIELDS = ("alpha", "temperature", "top_p", "beta")
DPO_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ScopeConfig) if f.name in DPO_FIELDS}


def trained_params(run_dir: str | os.PathLike, config: ScopeConfig, template: Any) -> Any:
    """The parameters of the finished stage in ``run_dir`` (a stage of the same model)."""
    saved = runs.load_run_config(run_dir)
    if saved.get("model") != config.model:
        raise UsageError(f"{run_dir} holds a {saved.get('model')} run, not {config.model}")
    optimizer = config.optimizer(1)  # the state's structure is that of every stage
    state = training.TrainState.create(template, optimizer, jax.random.key(0))
    return jax.device_get(runs.restore_state(run_dir, state).params)


def language_model_loss(model: Any):
    """Token cross-entropy of the text given the prompt (``loss_fn`` of ``fit``)."""

    def loss_fn(params, batch, rng):
        return token_loss(*response_logits(model, params, batch, rng=rng))

    return loss_fn


def dpo_loss_fn(model: Any, beta: float):
    """DPO on batches of pairs with the reference log-probabilities stored beside them."""

    def loss_fn(params, batch, rng):
        del rng  # no dropout in preference training
        chosen = sequence_logps(*response_logits(model, params, batch, "chosen_"))
        rejected = sequence_logps(*response_logits(model, params, batch, "rejected_"))
        return dpo_loss(chosen, rejected, batch["ref_chosen"], batch["ref_rejected"], beta)

    return loss_fn


@functools.partial(jax.jit, static_argnames=("model",))
def _pair_logps(model, params, batch):
    return tuple(
        sequence_logps(*response_logits(model, params, batch, side))
        for side in ("chosen_", "rejected_")
    )


def preference_pairs(
    config: ScopeConfig,
    model: Any,
    sft_params: Any,
    lm_params: Any,
    tokenizer: Tokenizer,
    examples: list[dict[str, Any]],
    path: Path,
    batch_size: int = 64,
) -> dict[str, np.ndarray]:
    """DPO arrays for ``examples``: the gold text (chosen), one noisy negative (rejected)
    and the frozen SFT model's log-probabilities of both (``ref_chosen``, ``ref_rejected``).

    The pairs and the reference log-probabilities are computed once and kept in ``path``
    (JSON lines: ``id``, ``chosen``, ``rejected``, ``ref_chosen``, ``ref_rejected``), which
    a resumed run reads back.
    """
    transform = PairTransform(tokenizer, config.prompt_length, config.target_length)
    if path.exists():
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    else:
        rejected = generate(
            config,
            model,
            sft_params,
            tokenizer,
            examples,
            lm_params=lm_params,
            batch_size=batch_size,
            desc="noisy negatives",
        )
        rows = [
            {"id": e["id"], "record": e["record"], "chosen": e["text"], "rejected": r}
            for e, r in zip(examples, rejected, strict=True)
        ]
        ref_chosen, ref_rejected = pair_logps(
            model, sft_params, stack([transform(r) for r in rows])
        )
        for row, c, r in zip(rows, ref_chosen, ref_rejected, strict=True):
            row |= {"ref_chosen": float(c), "ref_rejected": float(r)}
        if training.is_primary():
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
            os.replace(tmp, path)
    arrays = stack([transform(row) for row in rows])
    arrays["ref_chosen"] = np.array([row["ref_chosen"] for row in rows], np.float32)
    arrays["ref_rejected"] = np.array([row["ref_rejected"] for row in rows], np.float32)
    return arrays


def pair_logps(
    model: Any, params: Any, arrays: dict[str, np.ndarray], batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Summed log-probabilities ``[N]`` of the chosen and of the rejected texts of
    ``arrays`` (:class:`PairTransform` pairs) under ``params``, in equal batches."""
    count = len(arrays["prompt"])
    size = min(batch_size, count)
    chosen, rejected = [], []
    for start in range(0, count, size):
        index = np.minimum(np.arange(start, start + size), count - 1)  # pad the last batch
        c, r = _pair_logps(model, params, {k: v[index] for k, v in arrays.items()})
        keep = min(size, count - start)
        chosen.append(np.asarray(c)[:keep])
        rejected.append(np.asarray(r)[:keep])
    return np.concatenate(chosen), np.concatenate(rejected)


def generate(
    config: ScopeConfig,
    model: Any,
    params: Any,
    tokenizer: Tokenizer,
    examples: list[dict[str, Any]],
    *,
    lm_params: Any = None,
    cad_weight: float | None = None,
    batch_size: int = 64,
    desc: str = "generate",
    progress: bool = True,
) -> list[str]:
    """Texts for the records of ``examples``: greedy (default), context-aware greedy
    (``cad_weight``, against ``lm_params``) or SCOPE's noisy sampling (``lm_params``
    without ``cad_weight``: ``config.alpha``, ``temperature``, ``top_p``, key from
    ``config.seed``)."""
    transform = PairTransform(tokenizer, config.prompt_length, config.target_length)
    step = step_function(model)
    length, texts = config.target_length, []
    batch_size = min(batch_size, len(examples))
    key = jax.random.key(config.seed + 1)
    if lm_params is not None:  # the unconditional model reads the same empty prompt for all
        empty = PairTransform(
            tokenizer, config.prompt_length, config.target_length, unconditional=True
        )
        no_prompt, no_mask = (np.stack([a] * batch_size) for a in empty.prompt(""))
        lm_cache, _ = generation_start(model, lm_params, no_prompt, no_mask, length)
    for start in tqdm(
        range(0, len(examples), batch_size), desc=desc, disable=not progress, dynamic_ncols=True
    ):
        chunk = examples[start : start + batch_size]
        chunk = chunk + [chunk[0]] * (batch_size - len(chunk))  # one compilation
        prompts = [transform.prompt(e["record"]) for e in chunk]
        prompt = np.stack([p[0] for p in prompts])
        mask = np.stack([p[1] for p in prompts])
        cache, first = generation_start(model, params, prompt, mask, length)
        if lm_params is None:
            out = greedy_search(
                step,
                params,
                cache,
                first,
                max_length=length,
                eos_id=tokenizer.eos_id,
                pad_id=tokenizer.pad_id,
            )
        else:
            if cad_weight is not None:
                out = greedy_search(
                    _cad_step(step, cad_weight),
                    (params, lm_params),
                    (cache, lm_cache),
                    first,
                    max_length=length,
                    eos_id=tokenizer.eos_id,
                    pad_id=tokenizer.pad_id,
                )
            else:
                out, _ = noisy_sample(
                    step,
                    params,
                    cache,
                    step,
                    lm_params,
                    lm_cache,
                    first,
                    jax.random.fold_in(key, start),
                    alpha=config.alpha,
                    max_length=length,
                    temperature=config.temperature,
                    top_p=config.top_p,
                    eos_id=tokenizer.eos_id,
                    pad_id=tokenizer.pad_id,
                )
        rows = np.asarray(out)[: len(examples[start : start + batch_size])]
        texts.extend(tokenizer.decode(row) for row in rows)
    return texts


@functools.cache
def _cad_step(step, weight: float):
    return functools.partial(cad_step, step=step, weight=weight)


# ----------------------------------------------------------------------------- pipeline


def faithfulness_table(
    config: ScopeConfig, systems: dict[str, list[str]], examples: list[dict[str, Any]]
) -> dict[str, dict[str, float]]:
    """The scores of each system's outputs on ``examples``."""
    references = [e["text"] for e in examples]
    values = [e["values"] for e in examples]
    table = {}
    for name, outputs in systems.items():
        scores = value_scores(outputs, values) | parent_scores(outputs, references, values)
        table[name] = {k: float(v) for k, v in (scores | rouge(outputs, references)).items()}
    return table


def ensure_tokenizer(config: ScopeConfig, path: Path) -> str:
    """Train the tokenizer on training records and texts (deterministic) unless ``path``
    holds it already."""
    if not path.exists():
        # At least TOKENIZER_EXAMPLES examples, so that every value gets its pieces.
        size = max(config.train_examples, TOKENIZER_EXAMPLES)
        source = DataToTextSource("train", size, seed=config.data_seed)
        lines = [source[i][k] for i in range(len(source)) for k in ("record", "text")]
        train_tokenizer(lines, path, config.vocab_size, num_sentinels=0)
    return str(path)


def run_scope(
    config: ScopeConfig,
    run_dir: str | os.PathLike,
    *,
    lm_steps: int,
    sft_steps: int,
    dpo_learning_rate: float,
    progress: bool = True,
) -> dict[str, Any]:
    """The whole pipeline (module doc) in ``run_dir``; returns and saves
    ``results.json`` with the evaluation table."""
    identity = config_to_dict(config, identity_only=True) | {
        "lm_steps": lm_steps,
        "sft_steps": sft_steps,
    }
    for name in ("stage", "num_steps", *DPO_FIELDS):
        identity.pop(name, None)  # the lm and sft runs are shared by every dpo setting
    run_dir = runs.prepare_run_dir(run_dir, identity)
    tokenizer_path = ensure_tokenizer(config, run_dir / TOKENIZER_FILE)
    base = dataclasses.replace(config, tokenizer_path=tokenizer_path)
    shared = dataclasses.replace(base, **{name: DPO_DEFAULTS[name] for name in DPO_FIELDS})
    lm = dataclasses.replace(shared, stage="lm", num_steps=lm_steps, init_from=None, lm_from=None)
    harness.train_and_evaluate(lm, run_dir / "lm", progress=progress)
    sft = dataclasses.replace(lm, stage="sft", num_steps=sft_steps, init_from=str(run_dir / "lm"))
    harness.train_and_evaluate(sft, run_dir / "sft", progress=progress)
    dpo_dir = run_dir / f"dpo-alpha{config.alpha:g}-beta{config.beta:g}-seed{config.seed}"
    one_epoch = max(1, (config.train_examples - config.train_examples // 2) // config.batch_size)
    dpo = dataclasses.replace(
        base,
        stage="dpo",
        num_steps=config.num_steps or one_epoch,
        init_from=str(run_dir / "sft"),
        lm_from=str(run_dir / "lm"),
        learning_rate=dpo_learning_rate,
    )
    dpo_results = harness.train_and_evaluate(dpo, dpo_dir, progress=progress)

    tokenizer = Tokenizer(tokenizer_path)
    model = dpo.make_model(tokenizer, dropout=0.0)
    template = dpo.initial_state(model, dpo.optimizer(1)).params
    sft_params = trained_params(run_dir / "sft", dpo, template)
    lm_params = trained_params(run_dir / "lm", dpo, template)
    scope_params = trained_params(dpo_dir, dpo, template)
    test = [config.source("test")[i] for i in range(config.test_examples)]
    kwargs = {"progress": progress}
    systems = {
        "SFT": generate(dpo, model, sft_params, tokenizer, test, desc="SFT", **kwargs),
        "SFT + SCOPE": generate(dpo, model, scope_params, tokenizer, test, desc="SCOPE", **kwargs),
        "CAD": generate(
            dpo,
            model,
            sft_params,
            tokenizer,
            test,
            lm_params=lm_params,
            cad_weight=config.cad_weight,
            desc="CAD",
            **kwargs,
        ),
    }
    if training.is_primary():
        with open(dpo_dir / "test_outputs.jsonl", "w", encoding="utf-8") as out:
            for i, e in enumerate(test):
                row = {"id": e["id"], "record": e["record"], "reference": e["text"]}
                out.write(json.dumps(row | {n: s[i] for n, s in systems.items()}) + "\n")
    results = {
        "model": config.model,
        "alpha": config.alpha,
        "seed": config.seed,
        "test_examples": len(test),
        "dpo": {
            k: dpo_results[k] for k in ("reward_margin", "preference_accuracy") if k in dpo_results
        },
        "table": faithfulness_table(config, systems, test),
    }
    runs.write_results(dpo_dir, results)
    return results


def format_table(table: dict[str, dict[str, float]]) -> str:
    """A markdown table of :func:`faithfulness_table`'s scores."""
    columns = TABLE_COLUMNS
    lines = ["| system | " + " | ".join(label for _, label in columns) + " |"]
    lines.append("|---" * (len(columns) + 1) + "|")
    for name, scores in table.items():
        cells = [f"{scores[k]:.3f}" if not math.isnan(scores[k]) else "–" for k, _ in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class ScopeRunConfig(ScopeConfig):
    """The whole SCOPE pipeline (``python -m seq_models scope``).

    Attributes:
      lm_steps: steps of the unconditional LM.
      sft_steps: steps of supervised fine-tuning on D1.
      num_steps: steps of preference training on D2 (0: one epoch).
    """

    lm_steps: int = option(600, minimum=1)
    sft_steps: int = option(1500, minimum=1)
    num_steps: int = option(0, minimum=0, flag="--dpo-steps")
    learning_rate: float = option(3e-3, positive=True, flag="--lr")
    dpo_learning_rate: float = option(1e-4, positive=True, flag="--dpo-lr")

    def stage_config(self) -> ScopeConfig:
        fields = config_to_dict(self)
        for name in ("lm_steps", "sft_steps", "dpo_learning_rate"):
            del fields[name]
        return ScopeConfig(**fields)


def scope_command(config: ScopeRunConfig, run_dir: str, progress: bool) -> str:
    """Run the pipeline and print its table."""
    results = run_scope(
        config.stage_config(),
        run_dir,
        lm_steps=config.lm_steps,
        sft_steps=config.sft_steps,
        dpo_learning_rate=config.dpo_learning_rate,
        progress=progress,
    )
    dpo = results["dpo"]
    return "\n".join(
        [
            f"SCOPE, {config.model}, alpha {config.alpha:g}, seed {config.seed}: "
            f"{results['test_examples']} test records, greedy decoding",
            format_table(results["table"]),
            f"DPO on validation pairs: reward margin {dpo.get('reward_margin', math.nan):.3f}, "
            f"preference accuracy {dpo.get('preference_accuracy', math.nan):.3f}",
            f"run directory {run_dir}",
        ]
    )
