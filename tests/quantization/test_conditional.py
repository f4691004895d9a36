"""The winner-take-all loss, its gradient, dead heads, re-seeding and ``predict``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import jit

from quantization import ConditionalQuantizer, head_wins, wta_loss

X = jnp.linspace(-1, 1, 6)[:, None]
MODEL = ConditionalQuantizer(num_points=3, dim_y=2, hidden=(8,))


@pytest.fixture(scope="module")
def params():
    return jit(MODEL.init)(jax.random.key(0), X)


def test_predict_shapes_and_weights(params):
    points, weights = jax.jit(MODEL.predict)(params, X)
    assert points.shape == (6, 3, 2) and weights.shape == (6, 3)
    assert bool(jnp.all(weights >= 0))
    np.testing.assert_allclose(weights.sum(-1), 1, atol=1e-6)


def test_gradient_reaches_only_the_nearest_head(params):
    """Per example, the distortion's gradient is zero on every point but the nearest
    one's, both with respect to the points and to each head's output weights."""
    points, logits = jit(MODEL.apply)(params, X)
    y = jax.random.normal(jax.random.key(1), (6, 2))
    nearest = np.argmin(np.sum((np.asarray(points) - np.asarray(y)[:, None]) ** 2, -1), -1)
    assert len(set(nearest)) > 1  # the examples do not all pick one head
    owner = np.arange(3)[None] == nearest[:, None]  # [example, head]

    grads = jit(jax.grad(lambda p: wta_loss(p, logits, y)[1]["distortion"]))(points)
    np.testing.assert_array_equal(np.any(np.asarray(grads) != 0, axis=-1), owner)

    # Through the network, example by example: only the winner's output columns move.
    def example_distortion(p, x, target):
        pts, lg = MODEL.apply(p, x[None])
        return wta_loss(pts, lg, target[None])[1]["distortion"]

    per_example = jit(jax.vmap(jax.grad(example_distortion), in_axes=(None, 0, 0)))(params, X, y)
    kernel = np.asarray(per_example["params"]["points"]["kernel"]).reshape(6, 8, 3, 2)
    np.testing.assert_array_equal(np.any(kernel != 0, axis=(1, 3)), owner)


def test_weight_head_is_optimal_at_the_winner_shares():
    """The cross-entropy on the winner index is minimal where p(x) equals the cells'
    masses: with fixed points {-1, +1} and draws of N(0.5, 1), its gradient vanishes at
    the logits of the empirical shares of y < 0 and y > 0 (about 0.3085, 0.6915)."""
    points = jnp.tile(jnp.array([[[-1.0], [1.0]]]), (4096, 1, 1))
    y = 0.5 + jax.random.normal(jax.random.key(2), (4096, 1))
    share = float(np.mean(np.asarray(y) > 0))
    assert share == pytest.approx(0.6915, abs=0.02)

    def ce_grad(logits):
        ce = lambda lg: wta_loss(points, jnp.tile(lg, (4096, 1)), y)[1]["weight_ce"]  # noqa: E731
        return float(jnp.abs(jit(jax.grad(ce))(logits)).max())

    assert ce_grad(jnp.log(jnp.array([[1 - share, share]]))) < 1e-6
    assert ce_grad(jnp.zeros((1, 2))) > 0.1


def test_dead_heads_are_found_and_reseeding_pulls_them_back(params):
    points = jnp.array([[[0.0], [0.1], [50.0]]] * 4)  # the third head is far from the data
    y = jnp.array([[0.0], [0.2], [1.0], [-3.0]])
    logits = jnp.zeros((4, 3))
    _, metrics = wta_loss(points, logits, y)
    assert float(metrics["idle_heads"]) == 1
    plain = np.asarray(jit(jax.grad(lambda p: wta_loss(p, logits, y)[0]))(points))
    assert not np.any(plain[:, 2])
    grads = np.asarray(jit(jax.grad(lambda p: wta_loss(p, logits, y, reseed=True)[0]))(points))
    # Only the idle head gets more, only at the worst-served example (y = -3, 3 from its
    # nearest point), towards it; the other heads' gradients are unchanged.
    assert np.flatnonzero(grads[:, 2, 0]).tolist() == [3]
    assert grads[3, 2, 0] > 0
    np.testing.assert_array_equal(grads[:, :2], plain[:, :2])
    # Over a data set through the model: every example has one winner; a head placed
    # out of reach of all targets is dead.
    far = jax.tree.map(lambda a: a, params)
    bias = far["params"]["points"]["bias"].reshape(3, 2).at[1].set(1e3)
    far["params"]["points"]["bias"] = bias.reshape(-1)
    counts = head_wins(MODEL, far, np.asarray(X), np.zeros((6, 2)))
    assert counts.sum() == 6 and counts[1] == 0


def test_head_wins_validates_shapes(params):
    with pytest.raises(ValueError, match=r"x and y must be .* got \(4, 1\) and \(3, 2\)"):
        head_wins(MODEL, params, np.zeros((4, 1)), np.zeros((3, 2)))
