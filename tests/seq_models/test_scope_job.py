"""The SCOPE pipeline end to end (encoder-decoder) and its decoder-only path, tiny settings."""

import dataclasses
import json
import math

import jax
import numpy as np
import pytest

from miles_cli import UsageError
from seq_models.__main__ import main
from seq_models.scope_job import (
    PairTransform,
    ScopeConfig,
    dpo_loss_fn,
    ensure_tokenizer,
    generate,
    pair_logps,
    preference_pairs,
    run_scope,
    trained_params,
)
from seq_models.tokenizer import Tokenizer

# D2, the validation and the test records are 8 examples each: one batch of every
# generation and log-probability program, so each compiles once.
TINY = dict(
    train_examples=16,
    validation_examples=8,
    test_examples=8,
    prompt_length=48,
    target_length=48,
    batch_size=4,
    num_steps=0,  # preference training: one epoch, 2 steps (the first at learning rate 0)
    eval_every=0,
    checkpoint_every=0,
)
DPO_DIR = "dpo-alpha0.5-beta0.1-seed0"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("scope")
    config = ScopeConfig(**TINY)
    results = run_scope(
        config, run_dir, lm_steps=8, sft_steps=8, dpo_learning_rate=1e-3, progress=False
    )
    return config, run_dir, results


def test_pipeline_reports_every_system(pipeline):
    config, run_dir, results = pipeline
    table = results["table"]
    assert set(table) == {"SFT", "SFT + SCOPE", "CAD"}
    for scores in table.values():
        for name in ("hallucination_rate", "omission_rate", "parent_precision", "rouge1"):
            assert 0.0 <= scores[name] <= 1.0
    lines = (run_dir / DPO_DIR / "test_outputs.jsonl").read_text().splitlines()
    assert len(lines) == config.test_examples and {"SFT", "CAD"} <= set(json.loads(lines[0]))
    assert json.loads((run_dir / DPO_DIR / "results.json").read_text())["table"] == table


def test_the_reference_is_the_frozen_sft_model(pipeline):
    config, run_dir, _ = pipeline
    tokenizer = Tokenizer(str(run_dir / "tokenizer.model"))
    stage = dataclasses.replace(
        config,
        stage="dpo",
        num_steps=3,
        init_from=str(run_dir / "sft"),
        lm_from=str(run_dir / "lm"),
        tokenizer_path=str(run_dir / "tokenizer.model"),
    )
    model = stage.make_model(tokenizer, dropout=0.0)
    template = stage.initial_state(model, stage.optimizer(1)).params
    sft = trained_params(run_dir / "sft", stage, template)
    trained = trained_params(run_dir / DPO_DIR, stage, template)
    rows = [
        json.loads(line)
        for line in (run_dir / DPO_DIR / "pairs_train.jsonl").read_text().splitlines()
    ]
    assert len(rows) == config.train_examples // 2
    assert any(r["rejected"] != r["chosen"] for r in rows)
    # The stored reference log-probabilities are those of the SFT checkpoint, after DPO.
    transform = PairTransform(tokenizer, config.prompt_length, config.target_length)
    arrays = {k: np.stack([transform(r)[k] for r in rows]) for k in transform(rows[0])}
    chosen, rejected = pair_logps(model, sft, arrays)
    np.testing.assert_allclose(chosen, [r["ref_chosen"] for r in rows], rtol=1e-5)
    np.testing.assert_allclose(rejected, [r["ref_rejected"] for r in rows], rtol=1e-5)
    # Preference training moved the policy, not the reference.
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(), trained, sft))
    assert max(moved) > 0
    # The policy starts as the reference: every pair's loss is log 2 (the loss compiled,
    # as the training step runs it, rather than op by op).
    experiment = stage.build(run_dir / DPO_DIR)
    batch = next(iter(experiment.train_data))
    loss, metrics = jax.jit(experiment.loss_fn)(experiment.state.params, batch, None)
    assert math.isclose(float(loss), math.log(2.0), rel_tol=1e-5)
    assert abs(float(metrics["reward_margin"])) < 1e-4


def test_decoder_only_generation_and_preference_pairs(pipeline, tmp_path):
    config, run_dir, _ = pipeline
    stage = dataclasses.replace(config, model="decoder-only", seed=1)
    tokenizer = Tokenizer(ensure_tokenizer(stage, run_dir / "tokenizer.model"))
    model = stage.make_model(tokenizer, dropout=0.0)
    optimizer = stage.optimizer(1)
    params = stage.initial_state(model, optimizer).params
    lm_params = dataclasses.replace(stage, seed=2).initial_state(model, optimizer).params
    examples = [stage.source("test")[i] for i in range(4)]
    greedy = generate(stage, model, params, tokenizer, examples, progress=False)
    cad = generate(
        stage,
        model,
        params,
        tokenizer,
        examples,
        lm_params=lm_params,
        cad_weight=0.5,
        progress=False,
    )
    assert len(greedy) == len(cad) == 4 and all(isinstance(t, str) for t in greedy + cad)
    arrays = preference_pairs(
        stage, model, params, lm_params, tokenizer, examples, tmp_path / "pairs.jsonl"
    )
    batch = {k: v for k, v in arrays.items()}
    loss, _ = jax.jit(dpo_loss_fn(model, stage.beta))(params, batch, None)
    assert math.isclose(float(loss), math.log(2.0), rel_tol=1e-5)
    again = preference_pairs(
        stage, model, params, lm_params, tokenizer, examples, tmp_path / "pairs.jsonl"
    )
    np.testing.assert_array_equal(again["ref_rejected"], arrays["ref_rejected"])


def test_pair_transform_layouts(pipeline):
    _, run_dir, _ = pipeline
    tokenizer = Tokenizer(str(run_dir / "tokenizer.model"))
    transform = PairTransform(tokenizer, 24, 16)
    arrays = transform({"record": "person | first name: Mira", "text": "Mira is here."})
    prompt, mask = arrays["prompt"], arrays["prompt_mask"]
    assert mask[-1] and prompt[-1] == tokenizer.eos_id and not mask[0]
    assert (np.diff(mask.astype(int)) >= 0).all()  # left padding
    real = prompt[mask].tolist() + arrays["targets"][arrays["targets_mask"]].tolist()
    assert arrays["sequence"][: len(real)].tolist() == real
    assert arrays["sequence_mask"].sum() == arrays["targets_mask"].sum()
    empty = PairTransform(tokenizer, 24, 16, unconditional=True)
    assert empty.prompt("anything")[1].sum() == 1
    pair = transform({"record": "x | a: b", "chosen": "b.", "rejected": ""})
    assert pair["rejected_targets_mask"].sum() == 1  # an empty sample is EOS alone


def test_cli_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["scope", "--alpha", "1.5", "--run-dir", str(tmp_path / "a")])
    assert "alpha" in capsys.readouterr().err
    with pytest.raises(UsageError, match="needs init_from"):
        ScopeConfig(stage="dpo").build(tmp_path)
