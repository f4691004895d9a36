"""The Darcy training job and the ``python -m mano_jax`` command line, on tiny runs."""

import json

import multiprocess
import numpy as np
import pytest

import training
from mano_jax import darcy
from mano_jax.__main__ import main
from mano_jax.darcy_job import DarcyJobConfig, load_normalizers

TINY = ["--resolution", "16", "--train-size", "40", "--test-size", "10", "--batch-size", "8"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def test_train_command_trains_and_writes_a_run(tmp_path, data_dir, capsys):
    run = tmp_path / "run"
    args = ["train", *TINY, "--steps", "60", "--eval-every", "30", "--checkpoint-every", "30"]
    assert main([*args, "--run-dir", str(run), "--data-dir", data_dir, "--no-progress"]) == 0
    assert "test relative L2" in capsys.readouterr().out
    for name in (
        "config.json",
        "metrics.jsonl",
        "loss_curve.png",
        "samples.png",
        "normalizers.npz",
    ):
        assert (run / name).exists(), name
    results = json.loads((run / "results.json").read_text())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in records if r["split"] == "train"]
    evals = [r["loss"] for r in records if r["split"] == "eval"]
    assert len(train) == 6 and len(evals) == 2
    # The loss decreases and the final test error is the job's reported figure.
    assert np.mean(train[-2:]) < 0.7 * train[0]
    assert results["test_relative_l2"] == pytest.approx(evals[-1], rel=1e-4)
    assert results["parameters"] > 0
    a_norm, u_norm = load_normalizers(run)
    a_train = np.stack(
        [
            x["a"]
            for x in darcy.load_darcy(16, "train", train_size=40, test_size=10, data_dir=data_dir)
        ]
    )
    np.testing.assert_allclose(a_norm.mean, a_train.mean(axis=0), rtol=1e-6)
    assert u_norm.mean.shape == (16, 16)

    # The reloaded checkpoint predicts what the trained model predicted: the same error.
    assert main(["eval", "--run-dir", str(run), "--data-dir", data_dir]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test_relative_l2"] == pytest.approx(results["test_relative_l2"], rel=1e-6)
    assert (evaluated["step"], evaluated["test_resolution"]) == (60, 16)

    # Another configuration refuses the directory instead of mixing runs.
    with pytest.raises(SystemExit) as exc:
        main(["train", *TINY, "--steps", "61", "--run-dir", str(run), "--data-dir", data_dir])
    assert exc.value.code == 2
    assert "holds a different run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--model", "unet"], "argument --model: invalid choice: 'unet'"),
        (["train", "--task", "classify", "--resolution", "32"], "unrecognized arguments"),
        (["train", "--download"], "unrecognized arguments: --download"),
        (["train", "--task", "classify", "--dataset", "no_such_data_set"], "unknown TFDS data set"),
        (["eval", "--run-dir", "/nonexistent/run"], "holds no config.json"),
        (["eval"], "the following arguments are required: --run-dir"),
        (["train", "--preset", "huge"], "preset of model 'mano'"),
        (["train", "--resolution", "33"], "argument --resolution: invalid choice: 33"),
        (["train", "--steps", "0"], "argument --steps: num_steps must be an integer >= 1"),
        (["train", "--train-size", "4", "--batch-size", "8"], "batch_size must be <="),
        (["data", "--resolution", "7"], "invalid choice"),
        (["train", "--learning-rate", "nan"], "learning_rate must be a finite number > 0"),
    ],
)
def test_bad_arguments_end_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_command_prints_usage(capsys):
    assert main([]) == 2
    assert main(["fly"]) == 2
    assert "usage: python -m mano_jax" in capsys.readouterr().err


def test_config_validates():
    with pytest.raises(ValueError, match="model must be one of"):
        DarcyJobConfig(model="unet")
    assert DarcyJobConfig().model_config().dim > 0
    assert DarcyJobConfig(model="fno").model_config().width > 0


def test_train_command_runs_unchanged_as_two_processes(tmp_path, data_dir):
    """The same command under ``training.launch``: 2 processes x 2 devices, 4 steps."""
    run = tmp_path / "two"
    argv = ["train", *TINY, "--steps", "4", "--eval-every", "2", "--checkpoint-every", "2"]
    launched = multiprocess.run_local(
        ["python", "-m", "mano_jax", *argv, "--run-dir", str(run), "--data-dir", data_dir]
    )
    assert launched.returncode == 0, launched.output[-4000:]
    summaries = sorted(line[4:] for line in launched.stdout.splitlines() if "relative L2" in line)
    assert len(summaries) == 2 and summaries[0] == summaries[1]  # [0] and [1] agree
    results = json.loads((run / "results.json").read_text())
    assert results["steps"] == 4 and f"{results['test_relative_l2']:.4f}" in summaries[0]
    records = training.read_metrics(run / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in records] == [(2, "eval"), (4, "train"), (4, "eval")]
    for name in ("loss_curve.png", "samples.png", "normalizers.npz"):
        assert (run / name).stat().st_size > 0, name
