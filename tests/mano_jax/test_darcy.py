"""Tests of the Darcy-flow data pipeline: coefficient, solver, TFDS builder, normaliser, metric."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse

from mano_jax.darcy import (
    SUPPORTED_RESOLUTIONS,
    DarcyFlow,
    UnitGaussianNormalizer,
    assemble_darcy_matrix,
    darcy_config,
    default_data_dir,
    generate_sample,
    load_darcy,
    relative_l2,
    sample_coefficient,
    sample_grf,
    sample_seed,
    solve_darcy,
)
from mano_jax.darcy.cli import data_command
from mano_jax.darcy.coefficient import kl_coefficients

# ---------------------------------------------------------------------------
# Slow, obviously-correct references.


def torsion_function(s: int, terms: int = 4001) -> np.ndarray:
    """Exact solution of ``-Lap u = 1`` on the unit square, ``u = 0`` on the boundary.

    ``u = x (1 - x) / 2 - sum_{m odd} 4 / (pi^3 m^3) sin(m pi x)
    cosh(m pi (y - 1/2)) / cosh(m pi / 2)`` on the ``s x s`` node grid, with the
    cosh ratio written as exponentials to avoid overflow; the truncation error is
    below ``1e-8``.
    """
    t = np.linspace(0.0, 1.0, s)
    x, y = t[:, None, None], t[None, :, None]
    m = np.arange(1, terms + 1, 2, dtype=np.float64)[None, None, :]
    d = np.abs(y - 0.5)
    ratio = (
        np.exp(m * np.pi * (d - 0.5)) * (1 + np.exp(-2 * m * np.pi * d)) / (1 + np.exp(-m * np.pi))
    )
    series = np.sum(4.0 / (np.pi**3 * m**3) * np.sin(m * np.pi * x) * ratio, axis=-1)
    return x[..., 0] * (1 - x[..., 0]) / 2 - series


def loop_matrix(a: np.ndarray) -> np.ndarray:
    """Dense interior FD matrix assembled node by node."""
    s = a.shape[0]
    m = s - 2
    h2 = 1.0 / (s - 1) ** 2
    matrix = np.zeros((m * m, m * m))
    for i in range(1, s - 1):
        for j in range(1, s - 1):
            row = (i - 1) * m + (j - 1)
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                face = 0.5 * (a[i, j] + a[i + di, j + dj]) / h2
                matrix[row, row] += face
                ni, nj = i + di, j + dj
                if 1 <= ni <= s - 2 and 1 <= nj <= s - 2:
                    matrix[row, (ni - 1) * m + (nj - 1)] -= face
    return matrix


def cosine_basis(s: int) -> np.ndarray:
    """``phi[i, k]``: orthonormal Neumann cosines ``phi_k(x_i)`` at the nodes ``x_i = i/(s-1)``."""
    x = np.linspace(0.0, 1.0, s)[:, None]
    k = np.arange(s)[None, :]
    return np.where(k == 0, 1.0, np.sqrt(2.0)) * np.cos(np.pi * k * x)


# ---------------------------------------------------------------------------
# Solver.


def test_torsion_second_order_convergence():
    sizes = np.array([9, 17, 33, 65])
    errors = []
    for s in sizes:
        u = solve_darcy(np.ones((s, s)), 1.0)
        errors.append(np.max(np.abs(u - torsion_function(s))))
    h = 1.0 / (sizes - 1)
    order = np.polyfit(np.log(h), np.log(errors), 1)[0]
    assert 1.8 <= order <= 2.2, (order, errors)
    assert errors[-1] < 1e-4


def test_matrix_matches_loop_reference_and_is_spd():
    a = sample_coefficient(3, 9)
    matrix = assemble_darcy_matrix(a)
    assert scipy.sparse.issparse(matrix)
    assert matrix.shape == (49, 49)
    dense = matrix.toarray()
    np.testing.assert_allclose(dense, loop_matrix(a), rtol=1e-14, atol=0)
    np.testing.assert_array_equal(dense, dense.T)
    assert np.linalg.eigvalsh(dense).min() > 0


def test_matrix_spd_for_larger_random_coefficient():
    dense = assemble_darcy_matrix(sample_coefficient(11, 20, high=12.0, low=4.0)).toarray()
    assert np.max(np.abs(dense - dense.T)) <= 1e-12 * np.max(np.abs(dense))
    assert np.linalg.eigvalsh(dense).min() > 0


def test_solution_satisfies_discrete_system_for_variable_coefficient():
    rng = np.random.default_rng(0)
    s = 21
    a = sample_coefficient(5, s)
    f = rng.uniform(-1.0, 2.0, size=(s, s))
    u = solve_darcy(a, f)
    assert u.shape == (s, s)
    for edge in (u[0], u[-1], u[:, 0], u[:, -1]):
        np.testing.assert_array_equal(edge, 0.0)
    residual = assemble_darcy_matrix(a) @ u[1:-1, 1:-1].ravel() - f[1:-1, 1:-1].ravel()
    assert np.max(np.abs(residual)) < 1e-9 * np.max(np.abs(f))


def test_solution_inherits_symmetries_of_the_coefficient():
    a = sample_coefficient(8, 25)
    u = solve_darcy(a)
    np.testing.assert_allclose(solve_darcy(a.T), u.T, rtol=1e-12, atol=1e-14)
    mirrored = np.where(np.arange(25)[:, None] < 12, a, a[::-1])  # a(x) = a(1 - x)
    v = solve_darcy(mirrored)
    np.testing.assert_allclose(v, v[::-1], rtol=1e-10, atol=1e-14)
    assert np.all(v[1:-1, 1:-1] > 0)  # maximum principle for f = 1


def test_generate_sample_subsamples_the_fine_solution():
    a, u = generate_sample(4, 9, 33)
    assert a.dtype == np.float32 and u.dtype == np.float32
    assert a.shape == u.shape == (9, 9)
    a_fine = sample_coefficient(4, 33)
    np.testing.assert_array_equal(a, a_fine[::4, ::4].astype(np.float32))
    np.testing.assert_allclose(u, solve_darcy(a_fine)[::4, ::4], rtol=1e-6, atol=1e-9)
    a_default, _ = generate_sample(4, 9)  # default solve grid 2 s - 1 = 17, stride 2
    np.testing.assert_array_equal(a_default, sample_coefficient(4, 17)[::2, ::2])


# ---------------------------------------------------------------------------
# Coefficient field.


def test_grf_is_the_cosine_karhunen_loeve_sum():
    s = 12
    xi = np.random.default_rng(7).standard_normal((s, s))
    phi = cosine_basis(s)
    expected = phi @ (kl_coefficients(s) * xi) @ phi.T
    np.testing.assert_allclose(sample_grf(7, s), expected, rtol=1e-10, atol=1e-12)
    c = kl_coefficients(s, alpha=2.0, tau=3.0)
    assert c[0, 0] == 0.0
    assert c[1, 2] == pytest.approx(3.0 * (np.pi**2 * 5 + 9.0) ** -1.0)


def test_grf_covariance_matches_the_kl_covariance():
    s, n = 9, 10_000
    samples = np.stack([sample_grf(i, s).ravel() for i in range(n)])
    phi = np.kron(cosine_basis(s), cosine_basis(s))  # [s*s points, s*s modes]
    covariance = phi @ np.diag(kl_coefficients(s).ravel() ** 2) @ phi.T
    empirical = samples.T @ samples / n  # the field has zero mean
    error = np.linalg.norm(empirical - covariance) / np.linalg.norm(covariance)
    assert error < 0.05
    assert abs(samples.mean()) < 0.05 * np.sqrt(covariance.diagonal().mean())


def test_coefficient_takes_two_values_roughly_balanced():
    fractions = []
    for seed in range(200):
        a = sample_coefficient(seed, 33, high=12.0, low=3.0)
        assert a.shape == (33, 33) and a.dtype == np.float64
        assert set(np.unique(a)) <= {3.0, 12.0}
        fractions.append(np.mean(a == 12.0))
    fractions = np.array(fractions)
    assert np.any((fractions > 0) & (fractions < 1))  # both values occur
    assert 0.3 <= fractions.mean() <= 0.7
    a = sample_coefficient(0, 33, high=5.0, low=0.5)
    assert set(np.unique(a)) == {0.5, 5.0}
    g = sample_grf(0, 33)
    np.testing.assert_array_equal(a, np.where(g >= 0, 5.0, 0.5))


def test_same_seed_same_data_different_seed_different():
    np.testing.assert_array_equal(sample_coefficient(1, 17), sample_coefficient(1, 17))
    np.testing.assert_array_equal(
        sample_coefficient(np.random.SeedSequence(1), 17), sample_coefficient(1, 17)
    )
    assert not np.array_equal(sample_grf(1, 17), sample_grf(2, 17))
    a1, u1 = generate_sample(sample_seed(0, "train", 3), 9)
    a2, u2 = generate_sample(sample_seed(0, "train", 3), 9)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(u1, u2)
    for other in (
        sample_seed(1, "train", 3),
        sample_seed(0, "test", 3),
        sample_seed(0, "train", 4),
    ):
        assert not np.array_equal(generate_sample(other, 9)[1], u1)


# ---------------------------------------------------------------------------
# Dataset builder.


def _data_files(root) -> dict[str, float]:
    return {
        os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
        for d, _, files in os.walk(root)
        for f in files
    }


def test_builder_round_trip(tmp_path):
    kwargs = dict(train_size=4, test_size=2, seed=0, data_dir=tmp_path / "spawn")
    train = load_darcy(16, "train", num_workers=2, **kwargs)
    test = load_darcy(16, "test", num_workers=2, **kwargs)
    assert len(train) == 4 and len(test) == 2
    config = darcy_config(16, train_size=4, test_size=2)
    assert config.solve_resolution == 31
    for split, source in (("train", train), ("test", test)):
        for i in range(len(source)):
            example = source[i]
            assert set(example) == {"a", "u"}
            for key in ("a", "u"):
                assert isinstance(example[key], np.ndarray)
                assert example[key].dtype == np.float32 and example[key].shape == (16, 16)
            u = example["u"]
            assert np.all(u[0] == 0) and np.all(u[-1] == 0)
            assert np.all(u[:, 0] == 0) and np.all(u[:, -1] == 0)
            a_ref, u_ref = generate_sample(sample_seed(0, split, i), 16, 31)
            np.testing.assert_array_equal(example["a"], a_ref)
            np.testing.assert_array_equal(example["u"], u_ref)

    # A second call finds the data instead of regenerating it.
    before = _data_files(tmp_path / "spawn" / "darcy_flow")
    again = load_darcy(16, "train", num_workers=2, **kwargs)
    assert _data_files(tmp_path / "spawn" / "darcy_flow") == before
    np.testing.assert_array_equal(again[3]["u"], train[3]["u"])

    # One in-process worker produces the same bytes' worth of data.
    serial = load_darcy(16, "train", num_workers=1, **{**kwargs, "data_dir": tmp_path / "serial"})
    for i in range(4):
        np.testing.assert_array_equal(serial[i]["u"], train[i]["u"])


def test_builder_config_names_keep_settings_apart(tmp_path):
    assert [darcy_config(s).name for s in SUPPORTED_RESOLUTIONS] == [
        f"r{s}" for s in SUPPORTED_RESOLUTIONS
    ]
    assert darcy_config(85) is DarcyFlow.builder_configs["r85"]
    assert darcy_config(85).solve_resolution == 421
    names = {
        darcy_config(16, train_size=4).name,
        darcy_config(16, test_size=4).name,
        darcy_config(16, seed=4).name,
        darcy_config(16, high=4.0).name,
        darcy_config(16, low=4.0).name,
        darcy_config(16, solve_resolution=61).name,
        darcy_config(16, high=12.000000001).name,
        darcy_config(16).name,
    }
    assert len(names) == 8
    assert darcy_config(16, train_size=4, seed=3).name == "r16_train4_seed3"
    assert darcy_config(16, high=12.5).name == "r16_high12p5"
    builder = DarcyFlow(config=darcy_config(16, seed=3), data_dir=tmp_path, num_workers=1)
    assert builder.data_dir != DarcyFlow(config="r16", data_dir=tmp_path).data_dir
    assert str(tmp_path) in os.fspath(builder.data_dir)


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MILES_JAX_DATA_DIR", str(tmp_path))
    assert default_data_dir() == str(tmp_path)
    monkeypatch.delenv("MILES_JAX_DATA_DIR")
    expected = os.path.join(os.path.expanduser("~"), ".cache", "miles_jax", "tensorflow_datasets")
    assert default_data_dir() == expected


def test_cli_generates_and_reports(tmp_path, capsys):
    argv = ["--resolution", "16", "--train-size", "2", "--test-size", "1", "--seed", "5"]
    argv += ["--data-dir", str(tmp_path), "--workers", "1"]
    assert data_command(argv) == 0
    out = capsys.readouterr().out
    assert "r16_train2_test1_seed5" in out and str(tmp_path) in out
    assert "train: 2 examples" in out and "test: 1 examples" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--resolution", "17"], "--resolution"),
        (["--train-size", "0"], "--train-size"),
        (["--test-size", "x"], "--test-size"),
        (["--seed", "-1"], "--seed"),
        (["--workers", "0"], "--workers"),
        (["--low", "0"], "--low"),
        (["--resolution", "16", "--solve-resolution", "40"], "solve_resolution"),
    ],
)
def test_cli_rejects_bad_arguments(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        data_command([*argv, "--data-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err and "Traceback" not in err


# ---------------------------------------------------------------------------
# Normaliser and metric.


def test_unit_gaussian_normalizer_numpy_and_jax():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(50, 6, 5)) * rng.uniform(0.5, 2.0, size=(6, 5))
    normalizer = UnitGaussianNormalizer.fit(x)
    assert normalizer.mean.shape == (6, 5) and isinstance(normalizer.mean, np.ndarray)
    encoded = normalizer.encode(x)
    np.testing.assert_allclose(encoded.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(encoded.std(axis=0, ddof=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(normalizer.decode(encoded), x, rtol=1e-12)
    np.testing.assert_allclose(normalizer.encode(x[0]), encoded[0])  # no sample axis

    x32 = jnp.asarray(x, dtype=jnp.float32)
    fitted = UnitGaussianNormalizer.fit(x32)
    assert isinstance(fitted.mean, jax.Array)
    round_trip = jax.jit(lambda n, v: n.decode(n.encode(v)))(fitted, x32)
    np.testing.assert_allclose(round_trip, x32, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fitted.std, normalizer.std, rtol=1e-5)
    assert jax.tree_util.tree_leaves(fitted) == [fitted.mean, fitted.std]
    with pytest.raises(ValueError, match="x must have shape"):
        normalizer.encode(np.zeros((4, 5, 6)))
    with pytest.raises(ValueError, match="n >= 2"):
        UnitGaussianNormalizer.fit(x[:1])


def test_relative_l2_by_hand():
    target = np.array([[3.0, 4.0], [1.0, 0.0]])
    pred = np.array([[3.0, 5.0], [0.0, 0.0]])
    # Sample 0: ||(0, 1)|| / ||(3, 4)|| = 1/5; sample 1: ||(1, 0)|| / 1 = 1.
    assert float(relative_l2(pred, target)) == pytest.approx(0.6)
    assert float(jax.jit(relative_l2)(jnp.asarray(pred), jnp.asarray(target))) == pytest.approx(0.6)
    images = np.ones((2, 3, 3, 1))
    assert float(relative_l2(1.5 * images, images)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same shape"):
        relative_l2(np.ones((2, 3)), np.ones((3, 2)))


# ---------------------------------------------------------------------------
# Argument validation.


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: sample_coefficient(0, 2), "resolution"),
        (lambda: sample_coefficient(0, 8.0), "resolution"),
        (lambda: sample_coefficient(0, 9, high=0.0), "high"),
        (lambda: sample_coefficient(0, 9, low=-1.0), "low"),
        (lambda: sample_coefficient(0, 9, alpha=0.0), "alpha"),
        (lambda: sample_grf(0, 9, tau=-3.0), "tau"),
        (lambda: sample_grf(-1, 9), "seed"),
        (lambda: solve_darcy(np.ones((4, 5))), "a must be a square"),
        (lambda: solve_darcy(np.zeros((5, 5))), "positive"),
        (lambda: solve_darcy(np.ones((5, 5)), np.ones((4, 4))), "f must be"),
        (lambda: generate_sample(0, 9, 20), "solve_resolution"),
        (lambda: generate_sample(0, 9, 5), "solve_resolution"),
        (lambda: darcy_config(17), r"resolution must be one of \[16, 32, 64, 85"),
        (lambda: darcy_config(16, train_size=0), "train_size"),
        (lambda: darcy_config(16, test_size=-2), "test_size"),
        (lambda: darcy_config(16, seed=-1), "seed"),
        (lambda: darcy_config(16, high=0.0), "high"),
        (lambda: darcy_config(16, low=float("nan")), "low"),
        (lambda: load_darcy(16, "validation"), "split"),
        (lambda: DarcyFlow(config="r16", num_workers=0), "num_workers"),
    ],
)
def test_value_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
