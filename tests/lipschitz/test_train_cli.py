"""``python -m lipschitz train`` end to end on tiny settings, and the trained network's
certificates checked against its actual logits."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lipschitz.__main__ import main
from lipschitz.certify import certified_radii, logit_margins
from lipschitz.train_job import RESULTS_PLOT, TrainConfig
from training import harness

TINY = [
    "--image-size", "8", "--widths", "4", "--hidden", "8", "--steps", "40",
    "--batch-size", "32", "--eval-every", "40", "--checkpoint-every", "40",
    "--learning-rate", "0.01",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("lipschitz") / "run"
    assert main(["train", *TINY, "--run-dir", str(run_dir), "--no-progress"]) == 0
    return run_dir


def test_train_writes_results_and_figures(trained_run, capsys):
    results = json.loads((trained_run / "results.json").read_text())
    assert results["steps"] == 40
    assert 0.3 < results["clean_accuracy"] <= 1
    certified = results["certified_accuracy"]
    assert list(certified) == ["0.1", "0.25", "0.5", "1"]
    values = [certified[r] for r in certified]
    assert np.all(np.diff([results["clean_accuracy"], *values]) <= 0)
    assert (trained_run / RESULTS_PLOT).stat().st_size > 0
    assert (trained_run / "loss_curve.png").stat().st_size > 0
    # The same command again finds the finished run and resumes from its checkpoint.
    assert main(["train", *TINY, "--run-dir", str(trained_run), "--no-progress"]) == 0
    again = json.loads((trained_run / "results.json").read_text())
    assert again["clean_accuracy"] == results["clean_accuracy"]
    assert "clean accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,message",
    [
        (["--steps", "0"], "argument --steps: num_steps must be an integer >= 1, got 0"),
        (["--widths", "3"], "widths must be a non-empty sequence of values, each an even"),
        (["--image-size", "10", "--widths", "4", "4", "4"], "divisible by 4"),
        (["--radii", "-1"], "radii must be a non-empty sequence of values, each a finite"),
        (["--offset", "-1"], "offset must be a finite number >= 0"),
        (["--kernel-size", "9", "--image-size", "8"], "kernel_size must be <= image_size"),
    ],
)
def test_bad_arguments_exit_with_a_message(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *args, "--run-dir", str(tmp_path / "bad"), "--no-progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_other_run_in_the_directory_is_refused(trained_run, capsys):
    with pytest.raises(SystemExit):
        main(["train", *TINY, "--offset", "2", "--run-dir", str(trained_run), "--no-progress"])
    assert "holds a different run" in capsys.readouterr().err
    assert main([]) == 2 and main(["evaluate"]) == 2


def test_certificates_hold_on_the_trained_network(trained_run):
    """No perturbation inside the certified radius flips a certified prediction, and the
    network's Jacobian has spectral norm <= 1 at the test points."""
    config, experiment, state = harness.restore(TrainConfig, trained_run)
    model, params = experiment.model, state.params
    images, labels = (jnp.asarray(a[:32]) for a in experiment.extras["test"])
    apply = jax.jit(model.apply)
    logits = apply(params, images)
    radii = certified_radii(logits, labels)
    certified = radii > 0
    assert int(certified.sum()) >= 5

    def margin_of(x, y):
        return logit_margins(model.apply(params, x[None]), y[None])[0]

    @jax.jit
    @jax.vmap
    def check(x, y, radius, directions):
        """For one image: margins on the sphere of radius ``radius`` in ``directions``, the
        margin after projected gradient descent on it inside the ball, and the spectral
        norm of the Jacobian (from ``jacrev``, all outputs)."""
        moved = x + radius * directions
        random = logit_margins(model.apply(params, moved), jnp.full(len(moved), y))

        def step(delta, _):
            g = jax.grad(lambda d: margin_of(x + d, y))(delta)
            delta = delta - 0.4 * radius * g / (jnp.linalg.norm(g) + 1e-12)
            return delta * jnp.minimum(1.0, radius / (jnp.linalg.norm(delta) + 1e-12)), None

        delta, _ = jax.lax.scan(step, jnp.zeros_like(x), None, length=10)
        jacobian = jax.jacrev(lambda z: model.apply(params, z[None])[0])(x).reshape(10, -1)
        return random, margin_of(x + delta, y), jnp.linalg.svd(jacobian, compute_uv=False)[0]

    directions = jax.random.normal(jax.random.PRNGKey(0), (32, 16, *images.shape[1:]))
    norms = jnp.linalg.norm(directions.reshape(32, 16, -1), axis=-1)
    directions = directions / norms[..., None, None, None]
    random, attacked, jacobian_norms = check(images, labels, 0.999 * radii, directions)
    assert bool(jnp.all(random[certified] > 0))
    assert bool(jnp.all(attacked[certified] > 0))
    # The margin is sqrt(2)-Lipschitz: it moves by at most sqrt(2) * radius.
    moved = jnp.abs(random - logit_margins(logits, labels)[:, None])
    assert bool(jnp.all(moved <= math.sqrt(2) * 0.999 * radii[:, None] + 1e-5))
    assert float(jacobian_norms.max()) <= 1 + 1e-5
