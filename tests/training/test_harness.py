"""The job harness: run directory, training, report, results, resume and reload."""

import dataclasses
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import training
from miles_cli import UsageError, check_config, option
from training import harness, runs

X = np.random.default_rng(0).normal(size=(96, 3)).astype(np.float32)
W = np.array([1.0, -2.0, 0.5], np.float32)
Y = X @ W


@dataclasses.dataclass(frozen=True)
class LinearJob:
    """Least squares on a fixed problem.

    Attributes:
      learning_rate: Adam's rate.
      num_steps: optimizer steps.
      seed: initialisation.
      eval_every: evaluation period.
      checkpoint_every: checkpoint period.
      label: a reporting detail that does not identify the run.
    """

    learning_rate: float = option(0.2, positive=True)
    num_steps: int = option(60, minimum=1)
    seed: int = option(0, minimum=0)
    eval_every: int = option(30, minimum=0)
    checkpoint_every: int = option(20, minimum=0)
    label: str = option("linear", identity=False)

    def __post_init__(self):
        check_config(self)

    def build(self, run_dir: Path) -> harness.Experiment:
        class Linear:
            def init(self, key, x):
                return {"w": jnp.zeros(x.shape[-1])}

            def apply(self, params, x):
                return x @ params["w"]

        model = Linear()
        optimizer, state = runs.init_state(self, model, jnp.zeros((1, 3)), optimizer="adam")

        def loss_fn(params, batch, rng):
            err = model.apply(params, batch["x"]) - batch["y"]
            return jnp.mean(err**2), {"mae": jnp.mean(jnp.abs(err))}

        source = training.ArraySource(x=X, y=Y)
        return harness.Experiment(
            model=model,
            state=state,
            optimizer=optimizer,
            loss_fn=loss_fn,
            train_data=training.make_loader(source, 16, seed=self.seed),
            eval_data=training.make_eval_loader(source, 32),
        )

    def report(self, experiment, result, run_dir):
        w = np.asarray(result.state.params["w"])
        return harness.Report(
            fields={"label": self.label, "weight_error": float(np.abs(w - W).max())},
            title=self.label,
            curves=("loss", "mae"),
        )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("harness") / "run"
    return run_dir, harness.train_and_evaluate(LinearJob(), run_dir, progress=False)


def test_train_and_evaluate_writes_the_run(finished):
    run_dir, results = finished
    assert json.loads((run_dir / "results.json").read_text()) == results
    assert json.loads((run_dir / "config.json").read_text()) == {
        "learning_rate": 0.2,
        "num_steps": 60,
        "seed": 0,
        "eval_every": 30,
        "checkpoint_every": 20,
    }
    assert results["steps"] == 60 and results["parameters"] == 3
    assert results["train_seconds"] > 0 and results["peak_memory_mb"] > 0
    assert results["weight_error"] < 0.1
    assert (run_dir / "loss_curve.png").stat().st_size > 0
    records = training.read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records if r["split"] == "eval"] == [30, 60]


def test_a_finished_run_is_reloaded_not_retrained(finished):
    run_dir, results = finished
    log = (run_dir / "metrics.jsonl").read_text()
    # A field outside the run's identity may change; the run is reused as it is.
    again = harness.train_and_evaluate(LinearJob(label="renamed"), run_dir, progress=False)
    assert (run_dir / "metrics.jsonl").read_text() == log
    assert again["weight_error"] == results["weight_error"] and again["label"] == "renamed"
    config, experiment, state = harness.restore(LinearJob, run_dir)
    assert config == LinearJob() and int(state.step) == 60
    w = np.asarray(state.params["w"])
    assert float(np.abs(w - W).max()) == results["weight_error"]
    np.testing.assert_allclose(experiment.model.apply(state.params, X), X @ w, rtol=1e-6)


def test_another_run_is_refused(finished, tmp_path):
    run_dir, _ = finished
    with pytest.raises(UsageError, match="holds a different run"):
        harness.train_and_evaluate(LinearJob(seed=1), run_dir, progress=False)
    with pytest.raises(UsageError, match="holds no config.json"):
        harness.restore(LinearJob, tmp_path / "nothing")
