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
