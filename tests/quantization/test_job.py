"""``python -m quantization demo`` end to end on tiny settings (one shared run: three
synthetic runs and the inpainting), and the commands' argument errors."""

import json

import jax
import numpy as np
import pytest

from quantization import LAWS, w2_to_samples
from quantization.__main__ import COMPARISON_PLOT, main
from quantization.job import GRID_PLOT, TRUTH_KEY, SyntheticConfig
from training import harness

TINY = ["--steps", "20", "--inpaint-steps", "20", "--inpaint-points", "2", "--no-progress"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("quantization") / "demo"
    assert main(["demo", *TINY, "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_demo_writes_results_and_figures(demo_run):
    results = json.loads((demo_run / "results.json").read_text())
    synthetic = results["synthetic"]
    assert list(synthetic) == ["cclvq-n4", "conditional-mean", "mdn-n4"]
    assert set(synthetic["cclvq-n4"]["w2"]) == {
        "cclvq", "knn_kmeans", "oracle_kmeans", "cclvq_true_masses"
    }  # fmt: skip
    assert set(synthetic["mdn-n4"]["w2"]) == {"mdn"}
    for run in synthetic.values():
        assert run["steps"] == 20 and len(run["w2_per_input"][run["model"]]) == 64
        assert all(np.isfinite(w) and w > 0 for w in run["w2_per_input"][run["model"]])
    for label in ("cclvq-n4", "conditional-mean"):
        wins = synthetic[label]["head_wins"]
        assert sum(wins) == 20_000 and len(wins) == synthetic[label]["num_points"]
        assert synthetic[label]["dead_heads"] == [i for i, w in enumerate(wins) if w == 0]
    inpainting = results["inpainting"]
    assert inpainting["best_of_n_mse"] <= inpainting["heaviest_mse"]
    assert inpainting["diversity_rms"] > 0 and sum(inpainting["head_wins"]) == 1500
    for figure in (COMPARISON_PLOT, "cclvq-n4/quantization.png", f"inpainting/{GRID_PLOT}"):
        assert (demo_run / figure).stat().st_size > 0


def test_reported_w2_lies_between_transport_bounds(demo_run):
    """The reloaded quantizer's W2 at each test input is at least the distortion bound
    (every draw moves to some point: W2^2 >= mean_j min_i |s_j - f_i|^2) and at most the
    independent coupling's cost, and equals a fresh computation from the weights."""
    run_dir = demo_run / "cclvq-n4"
    config, experiment, state = harness.restore(SyntheticConfig, run_dir)
    x = experiment.extras["x_test"]
    points, weights = (np.asarray(a, np.float64) for a in experiment.model.predict(state.params, x))
    truth = LAWS[config.law].conditional(
        jax.random.split(jax.random.key(TRUTH_KEY))[0], x, config.samples_per_input, stratified=True
    )
    reported = np.array(json.loads((run_dir / "results.json").read_text())["w2_per_input"]["cclvq"])
    d2 = np.sum((truth[:, :, None] - points[:, None]) ** 2, axis=-1)  # [batch, m, n]
    lower = np.sqrt(d2.min(axis=-1).mean(axis=-1))
    upper = np.sqrt(
        np.einsum("bmn,bn->b", d2, weights / weights.sum(-1, keepdims=True)) / d2.shape[1]
    )
    assert np.all(lower <= reported + 1e-6) and np.all(reported <= upper + 1e-6)
    np.testing.assert_allclose(
        w2_to_samples(points, weights / weights.sum(-1, keepdims=True), truth), reported, rtol=1e-4
    )


def test_other_run_in_the_directory_is_refused(demo_run, capsys):
    with pytest.raises(SystemExit):
        main(["demo", *TINY, "--seed", "1", "--run-dir", str(demo_run)])
    assert "holds a different run" in capsys.readouterr().err
    assert main([]) == 2 and main(["evaluate"]) == 2


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--steps", "0"], "argument --steps: num_steps must be an integer >= 1, got 0"),
        (["train", "--law", "moon"], "invalid choice: 'moon'"),
        (["train", "--num-points", "8", "--neighbours", "4"], "neighbours must be >= num_points 8"),
        (
            ["train", "--train-size", "100", "--neighbours", "50"],
            "batch_size must be <= train_size 100, got 256",
        ),
        (["train", "--model", "gmm"], "invalid choice: 'gmm'"),
        (["inpaint", "--num-points", "0"], "num_points must be an integer >= 1, got 0"),
        (["inpaint", "--batch-size", "1501"], "batch_size must be <= the 1500 training digits"),
        (["demo", "--num-points", "1"], "num_points must be an integer >= 2, got 1"),
    ],
)
def test_bad_arguments_exit_with_a_message(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--run-dir", str(tmp_path / "bad"), "--no-progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
