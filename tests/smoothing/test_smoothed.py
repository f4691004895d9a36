"""The jitted batched sampler against the plain loop, PREDICT/CERTIFY on a smoothed linear
classifier (exact radius known), and the argument errors of the public functions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import smoothing
from smoothing import SimplexMap

DIM = 16
SIGMA = 0.5
MAPS = (SimplexMap("softmax", 0.5), SimplexMap("sparsemax", 1.0))


def mlp(params, xs):
    """A small nonlinear base classifier: ``[b, 4, 4] -> [b, 4]``."""
    hidden = jnp.tanh(xs.reshape(xs.shape[0], -1) @ params["w1"])
    return hidden @ params["w2"]


def linear(params, xs):
    """Two classes, logits ``[0, w.x + b]``: L2 Lipschitz constant ``||w||``."""
    score = xs @ params["w"] + params["b"]
    return jnp.stack([jnp.zeros_like(score), score], axis=-1)


def nan_above(params, xs):
    """NaN logits whenever the first coordinate exceeds ``params``."""
    logits = jnp.stack([xs[:, 0], -xs[:, 0]], axis=-1)
    return jnp.where(xs[:, :1] > params, jnp.nan, logits)


def one_class(params, xs):
    return xs[:, :1]


@pytest.fixture(scope="module")
def mlp_params():
    rng = np.random.default_rng(0)
    return {
        "w1": jnp.asarray(rng.normal(size=(16, 8)), jnp.float32),
        "w2": jnp.asarray(rng.normal(size=(8, 4)), jnp.float32),
    }


@pytest.fixture(scope="module")
def linear_params():
    w = np.random.default_rng(1).normal(size=DIM)
    return {"w": jnp.asarray(2.0 * w / np.linalg.norm(w), jnp.float32), "b": jnp.float32(0.3)}


def test_sampler_equals_the_plain_loop(mlp_params):
    maps = MAPS
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 4)), jnp.float32)
    key = jax.random.PRNGKey(3)
    # 2350 samples in batches of 500: the last batch is partial.
    kwargs = {"num": 2350, "sigma": SIGMA, "batch_size": 500, "maps": maps}
    fast = smoothing.sample_statistics(key, mlp, mlp_params, x, **kwargs)
    slow = smoothing.reference_statistics(key, mlp, mlp_params, x, **kwargs)
    assert fast.num == slow.num == 2350 and fast.votes.sum() == 2350
    np.testing.assert_array_equal(fast.votes, slow.votes)
    np.testing.assert_allclose(fast.mean, slow.mean, atol=1e-6)
    np.testing.assert_allclose(fast.cov, slow.cov, atol=1e-6)
    assert fast.mean.dtype == fast.cov.dtype == np.float64
    # The soft means lie on the simplex; the covariance is symmetric PSD.
    np.testing.assert_allclose(fast.mean.sum(-1), 1, atol=1e-6)
    assert np.linalg.eigvalsh(fast.cov).min() > -1e-9
    # One sample: no covariance estimate.
    single = smoothing.sample_statistics(key, mlp, mlp_params, x, num=1, sigma=SIGMA, maps=maps)
    assert single.votes.sum() == 1 and not single.cov.any()


def test_nan_logits_name_the_batch():
    x = jnp.zeros(3)
    key = jax.random.PRNGKey(0)
    threshold = jnp.float32(2.5 * SIGMA)  # about one sample in 160 is NaN
    kwargs = {"num": 1000, "sigma": SIGMA, "batch_size": 50}
    with pytest.raises(ValueError, match=r"NaN logits for noise batch \d+ of 20") as fast:
        smoothing.sample_statistics(key, nan_above, threshold, x, **kwargs)
    with pytest.raises(ValueError, match="NaN logits") as slow:
        smoothing.reference_statistics(key, nan_above, threshold, x, **kwargs)
    assert str(fast.value) == str(slow.value)
    with pytest.raises(ValueError, match="selection noise batch 0 of 1"):
        smoothing.certify(key, nan_above, jnp.float32(-1e9), x, sigma=SIGMA, n=10)


def test_fewer_than_two_classes_is_refused():
    with pytest.raises(ValueError, match="k >= 2 classes, got output shape"):
        smoothing.predict(jax.random.key(0), one_class, None, jnp.zeros(3), sigma=1.0, n=10)


def _exact_radius(params, x):
    """The smoothed linear classifier predicts the side of the hyperplane; its exact
    certified radius is the distance to it (also for the soft maps, by symmetry)."""
    score = float(x @ params["w"] + params["b"])
    return int(score > 0), abs(score) / float(jnp.linalg.norm(params["w"]))


def test_smoothed_linear_classifier_is_certified_within_its_exact_radius(linear_params):
    rng = np.random.default_rng(4)
    w = np.asarray(linear_params["w"])
    unit = w / np.linalg.norm(w)
    lipschitz = float(np.linalg.norm(w))
    distances = [0.02, 0.1, 0.3, 0.6, 1.0, 1.5]
    certified = []
    for i, signed in enumerate([d * s for d in distances for s in (1, -1)]):
        base = rng.normal(size=DIM)
        base -= (base @ unit + float(linear_params["b"]) / np.linalg.norm(w)) * unit
        x = jnp.asarray(base + signed * unit, jnp.float32)
        side, exact = _exact_radius(linear_params, x)
        selection, estimation = smoothing.sample_certification(
            jax.random.key(i),
            linear,
            linear_params,
            x,
            sigma=SIGMA,
            n=4000,
            maps=MAPS,
        )
        for method in smoothing.METHODS:
            cert = smoothing.certificate(
                selection,
                estimation,
                method=method,
                sigma=SIGMA,
                alpha=0.001,
                maps=MAPS,
                lipschitz=lipschitz,
            )
            if not cert.abstained:
                assert cert.prediction == side, (method, signed)
                assert cert.radius <= exact + 1e-9, (method, signed, cert)
                certified.append((method, exact, cert.radius))
    # Not vacuous: far from the boundary every certificate gets most of the exact radius.
    for method in smoothing.METHODS:
        ratios = [r / e for m, e, r in certified if m == method and e >= 0.6]
        assert len(ratios) == 6 and min(ratios) > 0.5, method


def test_predict_and_certify_agree_with_the_closed_form(linear_params):
    x = jnp.asarray(0.4 * np.asarray(linear_params["w"]) / 2.0, jnp.float32)
    side, exact = _exact_radius(linear_params, x)
    key = jax.random.PRNGKey(5)
    assert smoothing.predict(key, linear, linear_params, x, sigma=SIGMA, n=2000) == side
    cert = smoothing.certify(key, linear, linear_params, x, sigma=SIGMA, n=20_000)
    # pA = Phi(exact / sigma): the certified radius sits just below sigma Phi^-1(pA).
    assert cert.method == "cohen" and cert.prediction == side
    assert 0.8 * exact < cert.radius < exact
    again = smoothing.certify(key, linear, linear_params, x, sigma=SIGMA, n=20_000)
    assert again == cert  # reproducible from the key
    assert stats.norm.cdf(exact / SIGMA) > 0.5


def test_n10_predict_always_abstains(linear_params):
    far = jnp.asarray(10.0 * np.asarray(linear_params["w"]), jnp.float32)
    key = jax.random.PRNGKey(0)
    assert smoothing.predict(key, linear, linear_params, far, sigma=SIGMA, n=10) == -1
    assert smoothing.predict(key, linear, linear_params, far, sigma=SIGMA, n=11) == 1
    cert = smoothing.certify(key, linear, linear_params, far, sigma=SIGMA, n=10)
    assert cert.radius < 0.003 * SIGMA


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"sigma": 0.0}, "sigma must be a positive finite number"),
        ({"sigma": -1.0}, "sigma must be a positive finite number"),
        ({"alpha": 0.0}, "alpha must be a number in"),
        ({"alpha": 1.0}, "alpha must be a number in"),
        ({"n0": 0}, "n0 must be an integer >= 1"),
        ({"n": 0}, "n must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"method": "exact"}, "method must be one of"),
        ({"method": "lipschitz"}, "needs the Lipschitz constant of the logits"),
        ({"method": "lipschitz", "lipschitz": 1.0, "maps": ()}, "needs one or more SimplexMap"),
        ({"method": "lipschitz", "lipschitz": 1.0, "split": 1.0}, r"split must be in \(0, 1\)"),
    ],
)
def test_certify_argument_errors(linear_params, kwargs, match):
    arguments = {"sigma": SIGMA, "n": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        smoothing.certify(jax.random.key(0), linear, linear_params, jnp.zeros(DIM), **arguments)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"sigma": float("nan")}, "sigma must be a positive finite number"),
        ({"alpha": -0.1}, "alpha must be a number in"),
        ({"n": 0}, "n must be an integer >= 1"),
    ],
)
def test_predict_argument_errors(linear_params, kwargs, match):
    arguments = {"sigma": SIGMA, "n": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        smoothing.predict(jax.random.key(0), linear, linear_params, jnp.zeros(DIM), **arguments)


def test_lipschitz_certificate_goes_past_the_sample_size_cap(linear_params):
    """n samples cap Cohen's radius at sigma Phi^-1(alpha ** (1 / n)) (1.10 for n = 500);
    the margin radius of a Lipschitz score is not capped that way. Far from the boundary
    the Lipschitz-aware certificate goes further, still within the exact radius."""
    x = jnp.asarray(3.0 * np.asarray(linear_params["w"]) / 2.0, jnp.float32)
    _, exact = _exact_radius(linear_params, x)
    key = jax.random.PRNGKey(6)
    # The logit is w.x + b = 6 here: a temperature above it keeps both classes in
    # sparsemax's support, where the margin is not saturated.
    maps = (SimplexMap("sparsemax", 8.0),)
    common = {"sigma": SIGMA, "n": 500, "maps": maps, "lipschitz": 2.0}
    cohen = smoothing.certify(key, linear, linear_params, x, method="cohen", **common)
    aware = smoothing.certify(key, linear, linear_params, x, method="lipschitz", **common)
    cap = SIGMA * stats.norm.ppf(0.001 ** (1 / 500))
    assert cohen.radius <= cap + 1e-12
    assert "margin" in aware.method and 1.3 * cap < aware.radius <= exact


def test_keys_come_first_in_any_style(mlp_params):
    """An int seed, a new-style key and a legacy PRNGKey of the same seed draw the same
    noise, so the same statistics."""
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 4)), jnp.float32)
    kwargs = {"num": 300, "sigma": SIGMA, "batch_size": 100}
    seeds = [7, jax.random.key(7), jax.random.PRNGKey(7)]
    votes = [smoothing.sample_statistics(s, mlp, mlp_params, x, **kwargs).votes for s in seeds]
    for other in votes[1:]:
        np.testing.assert_array_equal(other, votes[0])
    assert votes[0].sum() == 300
    with pytest.raises(ValueError, match="key must be a jax.random key"):
        smoothing.sample_statistics("seven", mlp, mlp_params, x, **kwargs)


def test_certify_validates_sigma_and_alpha_once(linear_params, monkeypatch):
    """The public boundary checks each argument once; the inner functions trust it."""
    from smoothing import checks

    calls = {"check_sigma": 0, "check_alpha": 0}
    for name in calls:
        original = getattr(checks, name)

        def counted(*args, _original=original, _name=name):
            calls[_name] += 1
            return _original(*args)

        monkeypatch.setattr(checks, name, counted)
    x = jnp.asarray(0.4 * np.asarray(linear_params["w"]), jnp.float32)
    for method in smoothing.METHODS:
        calls.update(check_sigma=0, check_alpha=0)
        smoothing.certify(
            jax.random.key(0),
            linear,
            linear_params,
            x,
            sigma=SIGMA,
            n=100,  # the selection's batch shape: compiled once for every test
            method=method,
            lipschitz=2.0,
            maps=MAPS,
        )
        assert calls == {"check_sigma": 1, "check_alpha": 1}, method


def test_batched_sampling_is_the_per_input_sampling_whatever_the_grouping(mlp_params):
    """Input i of a batch drawn with key k gets sample_certification(fold_in(k, index_i)):
    the same counts (and soft means) alone, in one batch, or in groups. 4 inputs, 100
    selection samples (3 per call of 300) and 700 estimation samples in batches of 300."""
    xs = jnp.asarray(np.random.default_rng(8).normal(size=(4, 4, 4)), jnp.float32)
    key, indices = jax.random.key(9), np.array([5, 0, 11, 2])
    maps = MAPS[:1]
    kwargs = {"sigma": SIGMA, "n0": 100, "n": 700, "batch_size": 300, "maps": maps}
    batch = smoothing.sample_certification_batch(
        key, mlp, mlp_params, xs, indices=indices, **kwargs
    )
    grouped = smoothing.sample_certification_batch(
        key, mlp, mlp_params, xs[:3], indices=indices[:3], **kwargs
    ) + smoothing.sample_certification_batch(key, mlp, mlp_params, xs[3:], indices=[2], **kwargs)
    alone = [
        smoothing.sample_certification(jax.random.fold_in(key, i), mlp, mlp_params, x, **kwargs)
        for i, x in zip(indices, xs, strict=True)
    ]
    assert len(batch) == len(grouped) == 4
    for pairs in (grouped, alone):
        for ours, theirs in zip(batch, pairs, strict=True):
            for a, b in zip(ours, theirs, strict=True):
                assert a.num == b.num and a.votes.sum() == a.num
                np.testing.assert_array_equal(a.votes, b.votes)
                np.testing.assert_allclose(a.mean, b.mean, rtol=0, atol=1e-6)
                np.testing.assert_allclose(a.cov, b.cov, rtol=0, atol=1e-6)
    # Different inputs draw different noise: the two estimation counts of one input, with
    # the keys of two indices, differ.
    other = smoothing.sample_certification_batch(
        key, mlp, mlp_params, xs[3:], indices=[3], **kwargs
    )
    assert not np.array_equal(other[0][1].votes, batch[3][1].votes)


def test_batched_nan_logits_name_the_input():
    xs = jnp.array([[0.0, 0.0, 0.0], [1e6, 0.0, 0.0]])  # the second is NaN on every sample
    with pytest.raises(ValueError, match="NaN logits for input 8, selection noise batch 0 of 1"):
        smoothing.sample_certification_batch(
            0, nan_above, jnp.float32(5.0), xs, sigma=SIGMA, n0=10, n=10, indices=[7, 8]
        )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"indices": [0, 1]}, r"indices must be \[3\] integers in \[0, 2\^32\)"),
        ({"indices": [0, -1, 2]}, r"indices must be \[3\] integers"),
        ({"indices": [0.0, 1.0, 2.0]}, r"indices must be \[3\] integers"),
        ({"xs": np.zeros((0, DIM))}, r"xs must be a batch \[b, \*x.shape\] of b >= 1 inputs"),
        ({"xs": np.float32(1.0)}, r"xs must be a batch"),
        ({"mesh": "gpu"}, r"mesh must be a jax.sharding.Mesh with the one axis \('data',\)"),
        (
            {"mesh": jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("batch",))},
            r"mesh must be a .* got \('batch',\)",
        ),
        ({"sigma": 0.0}, "sigma must be a positive finite number"),
        ({"n0": 0}, "n0 must be an integer >= 1"),
    ],
)
def test_batched_argument_errors(linear_params, kwargs, match):
    arguments = {"xs": np.zeros((3, DIM)), "sigma": SIGMA, "n": 10, **kwargs}
    xs = arguments.pop("xs")
    with pytest.raises(ValueError, match=match):
        smoothing.sample_certification_batch(0, linear, linear_params, xs, **arguments)


def test_with_normalization_is_the_model_on_normalised_inputs(mlp_params):
    """Per-channel statistics (the last axis), against normalising by hand; equal wrappers
    are equal (one compilation)."""
    rng = np.random.default_rng(10)
    xs = jnp.asarray(rng.uniform(size=(3, 4, 4)), jnp.float32)
    mean, std = np.array([0.4, 0.5, 0.45, 0.3]), np.array([0.2, 0.25, 0.3, 0.5])
    g = smoothing.with_normalization(mlp, mean, std)
    manual = mlp(mlp_params, (xs - mean.astype(np.float32)) / std.astype(np.float32))
    np.testing.assert_allclose(g(mlp_params, xs), manual, rtol=1e-6, atol=1e-6)
    same = smoothing.with_normalization(mlp, list(mean), list(std))
    assert g == same and hash(g) == hash(same)
    assert g != smoothing.with_normalization(mlp, mean, 2 * std)


def test_with_normalization_puts_sigma_in_pixel_units(mlp_params):
    """With a scalar std, smoothing the wrapper at sigma is smoothing the model at
    sigma / std on normalised inputs: the same counts, radii scaled by std."""
    mean, std, sigma = 0.5, 0.25, 0.125
    x = jnp.asarray(np.random.default_rng(11).uniform(size=(4, 4)), jnp.float32)
    g = smoothing.with_normalization(mlp, mean, std)
    kwargs = {"n0": 300, "n": 300, "batch_size": 300}
    key = jax.random.key(12)
    pixel = smoothing.sample_certification(key, g, mlp_params, x, sigma=sigma, **kwargs)
    normalised = smoothing.sample_certification(
        key, mlp, mlp_params, (x - mean) / std, sigma=sigma / std, **kwargs
    )
    for a, b in zip(pixel, normalised, strict=True):
        np.testing.assert_array_equal(a.votes, b.votes)
    cohen = {"method": "cohen", "alpha": 0.01}
    ours = smoothing.certificate(*pixel, sigma=sigma, **cohen)
    theirs = smoothing.certificate(*normalised, sigma=sigma / std, **cohen)
    assert ours.prediction == theirs.prediction != smoothing.ABSTAIN
    assert ours.radius == pytest.approx(std * theirs.radius, rel=1e-12)


@pytest.mark.parametrize(
    "mean,std,match",
    [
        (0.5, 0.0, "std must be positive and finite"),
        (0.5, [0.2, -0.1], "std must be positive and finite"),
        (np.nan, 0.2, "mean must be finite"),
        ([0.1, 0.2, 0.3], [0.2, 0.2], "mean and std must broadcast together"),
    ],
)
def test_with_normalization_argument_errors(mean, std, match):
    with pytest.raises(ValueError, match=match):
        smoothing.with_normalization(mlp, mean, std)


def test_with_normalization_refuses_statistics_of_another_shape(mlp_params):
    g = smoothing.with_normalization(mlp, [0.5, 0.5, 0.5], 0.25)  # 3 channels, inputs [4, 4]
    with pytest.raises(ValueError, match=r"mean must broadcast to the shape of one input \(4, 4\)"):
        smoothing.certify(0, g, mlp_params, jnp.zeros((4, 4)), sigma=0.25, n=10)
