"""The RNN language model and ``python -m gradients train-lm``."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradients.__main__ import main
from gradients.language_model import RNNLanguageModel
from gradients.lm_job import PLOT

TINY = [
    "--methods", "dsf", "--width", "8", "--layers", "1", "--seq-len", "8",
    "--vocab-size", "40", "--batch-size", "4", "--steps", "4", "--eval-every", "2",
]  # fmt: skip


def test_feedback_changes_only_the_backward_pass():
    """The same parameters give the same logits under BPTT and DSF, and different
    gradients of the recurrent weights."""
    tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 7), 0, 30)
    models = {
        fb: RNNLanguageModel(30, width=8, layers=1, cell="lstm", feedback=fb)
        for fb in ("exact", "diagonal")
    }
    params = jax.jit(models["exact"].init)(jax.random.PRNGKey(1), tokens[:, :-1])

    @jax.jit
    def run(params):
        out = {}
        for fb, model in models.items():

            def loss(p, model=model):
                logits = model.apply(p, tokens[:, :-1])
                return optax.softmax_cross_entropy_with_integer_labels(
                    logits, tokens[:, 1:]
                ).mean(), logits

            grads, logits = jax.grad(loss, has_aux=True)(params)
            out[fb] = logits, grads["params"]["RecurrentBlock_0"]["cell"]["recurrent"]["w"]
        return out

    out = run(params)
    (exact_logits, exact_grad), (dsf_logits, dsf_grad) = out["exact"], out["diagonal"]
    assert exact_logits.shape == (2, 6, 30)
    np.testing.assert_allclose(dsf_logits, exact_logits, rtol=1e-6, atol=1e-6)
    assert jnp.linalg.norm(dsf_grad - exact_grad) > 1e-3 * jnp.linalg.norm(exact_grad)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("gradients") / "lm"
    assert main(["train-lm", *TINY, "--run-dir", str(run_dir), "--no-progress"]) == 0
    return run_dir


def test_train_lm_writes_curves_and_results(lm_run, capsys):
    results = json.loads((lm_run / "results.json").read_text())
    assert list(results["methods"]) == ["dsf"]
    for summary in results["methods"].values():
        # Four steps from a uniform model: the perplexity is below the vocabulary size.
        assert 1 < summary["valid_perplexity"] < 40 and summary["ms_per_step"] > 0
    assert results["methods"]["dsf"]["feedback"] == "diagonal"
    assert (lm_run / PLOT).stat().st_size > 0
    records = [json.loads(line) for line in (lm_run / "dsf" / "metrics.jsonl").open()]
    assert [r["step"] for r in records if r["split"] == "eval"] == [2, 4]
    # The same command again finds the run finished.
    assert main(["train-lm", *TINY, "--run-dir", str(lm_run), "--no-progress"]) == 0
    again = json.loads((lm_run / "results.json").read_text())
    assert (
        again["methods"]["dsf"]["valid_perplexity"] == results["methods"]["dsf"]["valid_perplexity"]
    )
    assert "valid perplexity" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,message",
    [
        (["--steps", "0"], "num_steps must be an integer >= 1, got 0"),
        (["--methods", "adjoint"], "invalid choice: 'adjoint'"),
        (["--cell", "transformer"], "invalid choice: 'transformer'"),
        (["--methods", "dsf", "dsf"], "methods must be distinct"),
        (["--weight-decay", "-1"], "weight_decay must be a finite number >= 0"),
        (["--seq-len", "5000", "--batch-size", "64"], "training windows"),
    ],
)
def test_bad_arguments_exit_with_a_message(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["train-lm", *args, "--run-dir", str(tmp_path / "bad"), "--no-progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_other_run_in_the_directory_is_refused(lm_run, capsys):
    with pytest.raises(SystemExit):
        main(["train-lm", *TINY, "--seed", "1", "--run-dir", str(lm_run), "--no-progress"])
    assert "holds a different run" in capsys.readouterr().err
    assert main([]) == 2 and main(["train"]) == 2
