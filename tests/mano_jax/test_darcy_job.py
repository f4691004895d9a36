"""The Darcy training job and the ``python -m mano_jax`` command line, on tiny runs."""

import dataclasses
import json

import jax
import multiprocess
import numpy as np
import pytest

import training
from mano_jax import darcy, field_data
from mano_jax.__main__ import main
from mano_jax.darcy_job import (
    DarcyJobConfig,
    evaluate_operator,
    load_normalizers,
    make_predict,
    make_transfer_predict,
    regrid,
    transfer_config,
)

TINY = ["--resolution", "16", "--train-size", "40", "--test-size", "10", "--batch-size", "8"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The tiny data set (both splits), generated in this process: the data do not depend
    on the number of workers (``test_darcy.py`` checks generation by spawned workers), and
    starting worker processes costs far more than solving 50 small problems."""
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    darcy.load_darcy(16, "train", train_size=40, test_size=10, data_dir=data_dir, num_workers=1)
    return data_dir


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
    np.testing.assert_allclose(a_norm.mean[..., 0], a_train.mean(axis=0), rtol=1e-6)
    assert u_norm.mean.shape == (16, 16, 1)

    # The reloaded checkpoint predicts what the trained model predicted: the same error.
    assert main(["eval", "--run-dir", str(run), "--data-dir", data_dir]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test_relative_l2"] == pytest.approx(results["test_relative_l2"], rel=1e-6)
    assert (evaluated["step"], evaluated["test_resolution"]) == (60, 16)
    # At the training resolution every way of transferring is the model itself: the
    # same configuration (the adaptive level count, here 3, made explicit) and no regridding.
    config = DarcyJobConfig(**json.loads((run / "config.json").read_text()), data_dir=data_dir)
    model_config = config.model_config()
    for transfer in ("fixed-levels", "scaled-window"):
        same = transfer_config(model_config, (16, 16), (16, 16), transfer)
        assert same == dataclasses.replace(model_config, num_levels=3), transfer
    scaled = transfer_config(model_config, (16, 16), (32, 32), "scaled-window")
    assert (scaled.window_size, scaled.num_levels) == (2 * model_config.window_size, 3)

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
    # The errors each process reports (the summary's training seconds may differ).
    summaries = sorted(
        line[4:].split(" (")[0] for line in launched.stdout.splitlines() if "relative L2" in line
    )
    assert len(summaries) == 2 and summaries[0] == summaries[1]  # [0] and [1] agree
    results = json.loads((run / "results.json").read_text())
    assert results["steps"] == 4 and f"{results['test_relative_l2']:.4f}" in summaries[0]
    records = training.read_metrics(run / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in records] == [(2, "eval"), (4, "train"), (4, "eval")]
    for name in ("loss_curve.png", "samples.png", "normalizers.npz"):
        assert (run / name).stat().st_size > 0, name


@pytest.fixture(scope="module")
def user_fields():
    """Smooth 3-channel input fields and a 2-channel output that depends on them
    non-locally, on a 12 x 10 grid (not a Darcy resolution, not square)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 12, 10, 3)).astype(np.float32)
    smooth = np.cumsum(np.cumsum(x, axis=1), axis=2) / 10
    y = np.stack([smooth[..., 0] * smooth[..., 1], np.tanh(smooth[..., 2])], axis=-1)
    return smooth.astype(np.float32), y.astype(np.float32)


def test_train_command_trains_on_user_npz_and_mat_files(tmp_path, user_fields, capsys):
    from scipy.io import savemat

    x, y = user_fields
    np.savez(tmp_path / "fields.npz", inputs=x, outputs=y)
    args = ["train", "--train-size", "24", "--test-size", "6", "--batch-size", "8"]
    args += ["--steps", "30", "--learning-rate", "3e-3", "--no-progress"]
    run = tmp_path / "npz"
    assert main([*args, "--data", str(tmp_path / "fields.npz"), "--run-dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert "relative L2" in out and "relative MSE" in out
    results = json.loads((run / "results.json").read_text())
    assert results["resolution"] == 12 and results["data"] == str(tmp_path / "fields.npz")
    a_norm, u_norm = load_normalizers(run)
    assert a_norm.mean.shape == (12, 10, 3) and u_norm.mean.shape == (12, 10, 2)
    np.testing.assert_allclose(u_norm.mean, y[:24].mean(axis=0), rtol=1e-5, atol=1e-6)
    # relative MSE is the mean squared per-sample relative error, hence >= relative L2^2
    assert results["test_relative_mse"] >= results["test_relative_l2"] ** 2 * (1 - 1e-6)
    records = training.read_metrics(run / "metrics.jsonl")
    train = [r["loss"] for r in records if r["split"] == "train"]
    assert np.mean(train[-2:]) < train[0]

    # The Navier-Stokes .mat layout: a [N, H, W] -> u [N, H, W, T], every other point
    # (the command reads it with the same function; training on it is the path above).
    savemat(tmp_path / "ns.mat", {"a": x[..., 0], "u": y, "t": np.arange(2.0)})
    a, u = field_data.load_fields(tmp_path / "ns.mat", stride=2)
    np.testing.assert_array_equal(a, x[:, ::2, ::2, :1])
    np.testing.assert_array_equal(u, y[:, ::2, ::2])


@pytest.mark.parametrize(
    ("arrays", "extra", "message"),
    [
        ({"a": np.zeros((5, 4, 4))}, [], "expected one of the key pairs"),
        ({"x": np.zeros((5, 4, 4)), "y": np.zeros((5, 4, 3))}, [], "must have the same"),
        ({"x": np.zeros((5, 4)), "y": np.zeros((5, 4))}, [], r"a numeric array [N, H, W]"),
        ({"x": np.full((5, 4, 4), np.nan), "y": np.zeros((5, 4, 4))}, [], "80 NaN or infinite"),
        ({"x": np.zeros((2, 4, 4)), "y": np.zeros((2, 4, 4))}, [], "at least 3 are needed"),
        ({"x": np.ones((5, 4, 4)), "y": np.ones((5, 4, 4))}, [], "holds 5 samples, fewer than"),
        ({"p": np.ones((5, 4, 4)), "q": np.ones((5, 4, 4))}, ["--input-key", "p"], "give both"),
    ],
)
def test_user_data_errors_are_named(tmp_path, capsys, arrays, extra, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    argv = ["train", "--data", str(tmp_path / "bad.npz"), "--run-dir", str(tmp_path / "run")]
    argv += ["--train-size", "4", "--test-size", "2", "--batch-size", "2", *extra]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())


def test_regrid_is_exact_for_bilinear_fields_and_keeps_shared_nodes():
    x, y = np.meshgrid(np.linspace(0, 1, 9), np.linspace(0, 1, 5), indexing="ij")
    field = np.stack([2 * x - 3 * y + 1, x * y], axis=-1)  # bilinear: reproduced exactly
    fine_x, fine_y = np.meshgrid(np.linspace(0, 1, 17), np.linspace(0, 1, 9), indexing="ij")
    fine = regrid(field, 17, 9)
    np.testing.assert_allclose(fine[..., 0], 2 * fine_x - 3 * fine_y + 1, atol=1e-6)
    np.testing.assert_allclose(fine[..., 1], fine_x * fine_y, atol=1e-6)
    np.testing.assert_allclose(fine[::2, ::2], field, atol=1e-6)  # shared nodes
    assert regrid(field, 9, 5) is field


def test_resample_transfer_equals_regridding_by_hand():
    """Zero-shot at 16 of weights for 8 x 8 grids: input regridded to 8 x 8, model,
    output regridded back; the other transfers run the model on the 16-grid itself."""
    rng = np.random.default_rng(1)
    a8, u8 = rng.normal(size=(2, 6, 8, 8, 1)).astype(np.float32)
    a_norm, u_norm = (darcy.UnitGaussianNormalizer.fit(x) for x in (a8, u8))
    model_config = DarcyJobConfig(preset="darcy-tiny").model_config()
    model = model_config.make()
    params = jax.jit(model.init)(jax.random.key(0), a8[:1])
    a16, u16 = rng.normal(size=(2, 3, 16, 16, 1)).astype(np.float32)
    predict = make_transfer_predict(model_config, a_norm, u_norm, (16, 16), "resample")
    errors, preds = evaluate_operator(predict, params, a16, u16)
    at8 = jax.jit(make_predict(model, a_norm, u_norm))
    coarse = np.stack([regrid(x, 8, 8) for x in a16])
    by_hand = np.stack([regrid(x, 16, 16) for x in np.asarray(at8(params, coarse))])
    np.testing.assert_allclose(preds, by_hand, rtol=1e-5, atol=1e-6)
    assert errors["test_relative_l2"] == pytest.approx(float(darcy.relative_l2(by_hand, u16)))
    native = make_transfer_predict(model_config, a_norm, u_norm, (16, 16), "native")
    assert np.asarray(native(params, a16)).shape == (3, 16, 16, 1)
    assert not np.allclose(native(params, a16), preds)
