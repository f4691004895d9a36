"""DSF against explicit references: the feedback recurrence against a loop, "zero" against
stop_gradient on the state, "exact" against jax.grad of a plain loop, every feedback
against a step-by-step transcription of the method, and a two-layer stack."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradients import CELLS, dsf_rnn, feedback_matrix, feedback_recurrence
from gradients.feedback import channels, split_channels

# Test programs are tiny: skip LLVM's optimisations, which dominate their compile time.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})

T, BATCH, HIDDEN, INPUTS = 4, 2, 4, 3
KEY = jax.random.PRNGKey(3)


def _stack(states):
    return jax.tree.map(lambda *a: jnp.stack(a), *states)


@functools.cache
@functools.partial(_jit, static_argnums=(0, 1))
def _setup(cell_name: str, input_size: int = INPUTS):
    """``(params, h0, xs)`` with a non-zero initial state."""
    cell = CELLS[cell_name]
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    params = cell.init(k[0], input_size, HIDDEN)
    zeros, treedef = jax.tree.flatten(cell.initial_state((BATCH,), HIDDEN))
    h0 = jax.tree.unflatten(
        treedef,
        [
            0.3 * jax.random.normal(jax.random.fold_in(k[1], i), z.shape)
            for i, z in enumerate(zeros)
        ],
    )
    xs = jax.random.normal(k[2], (T, BATCH, input_size))
    return params, h0, xs


def _probe(x):
    return jnp.cos(jnp.arange(x.size, dtype=x.dtype).reshape(x.shape))


def _loss(cell_name, hs):
    features = CELLS[cell_name].readout(hs)
    return jnp.sum(jnp.sin(features) * _probe(features))


def _loop(cell_name, params, h0, us, stop=False):
    """Plain unrolled recurrence; ``stop``: stop_gradient on the state carried from t >= 1."""
    step, h, states = CELLS[cell_name].step, h0, []
    for t in range(us.shape[0]):
        h = step(params, jax.lax.stop_gradient(h) if stop and t else h, us[t])
        states.append(h)
    return _stack(states)


def _feedback_of(name, size):
    return None if name == "zero" else feedback_matrix(name, size, KEY)


def _loss_fn(cell_name: str, method: str):
    """The loss as a function of (recurrent params, h0, us), with the recurrence run by
    ``dsf_rnn(method)`` or, for "loop"/"stop", by ``_loop``."""

    def loss(params, h0, us):
        if method in ("loop", "stop"):
            hs = _loop(cell_name, params, h0, us, stop=method == "stop")
        else:
            hs = dsf_rnn(CELLS[cell_name].step, method, key=KEY)(params, h0, us)
        return _loss(cell_name, hs)

    return loss


@functools.cache
def _gradients(cell_name: str, *methods: str):
    """Gradients w.r.t. (recurrent params, h0, us) for each method, in one compiled call."""
    grads = {m: jax.grad(_loss_fn(cell_name, m), argnums=(0, 1, 2)) for m in methods}
    return _jit(lambda *a: {m: g(*a) for m, g in grads.items()})(*_args(cell_name))


BASELINES = ("loop", "stop", "zero", "exact")


@functools.cache
def _args(cell_name):
    params, h0, xs = _setup(cell_name)
    return params["recurrent"], h0, _jit(CELLS[cell_name].project)(params["input"], xs)


def _slow_dsf(cell_name, feedback, params, h0, us, e):
    """The method written out: ``delta_t = e_t + A^T delta_{t+1}`` by a loop over ``t``
    on the concatenated state channels, then one VJP per step at ``(u_t, h_{t-1})``."""
    step = CELLS[cell_name].step
    states = [h0]
    for t in range(us.shape[0]):
        states.append(step(params, states[-1], us[t]))
    flat_e = channels(e)
    a = _feedback_of(feedback, flat_e.shape[-1])
    deltas = [None] * us.shape[0]
    following = jnp.zeros_like(flat_e[0])
    for t in range(us.shape[0] - 1, -1, -1):
        if a is None:
            propagated = 0
        elif a.ndim == 1:
            propagated = a * following
        else:
            propagated = following @ a  # rows: (A^T delta^T)^T
        following = deltas[t] = flat_e[t] + propagated
    d_params, d_us = None, []
    for t in range(us.shape[0]):
        delta = split_channels(deltas[t], jax.tree.map(lambda x, t=t: x[t], e))
        _, vjp = jax.vjp(lambda p, u, t=t: step(p, states[t], u), params, us[t])
        d_p, d_u = vjp(delta)
        d_params = d_p if d_params is None else jax.tree.map(jnp.add, d_params, d_p)
        d_us.append(d_u)
        if t == 0:
            (d_h0,) = jax.vjp(lambda h: step(params, h, us[0]), h0)[1](delta)
    return d_params, d_h0, jnp.stack(d_us)


@functools.cache
def _slow_grads(cell_name: str, feedback: str):
    def grads(params, h0, us):
        hs = _loop(cell_name, params, h0, us)
        e = jax.grad(lambda s: _loss(cell_name, s))(hs)
        return _slow_dsf(cell_name, feedback, params, h0, us, e)

    return _jit(grads)


@pytest.mark.parametrize("kind", ["diagonal", "gaussian", "orthogonal"])
def test_feedback_recurrence_matches_a_loop(kind):
    e = np.random.default_rng(0).normal(size=(40, 3, 5))
    a = np.asarray(feedback_matrix(kind, 5, KEY), np.float64)
    matrix = np.diag(a) if a.ndim == 1 else a
    expected, following = np.zeros_like(e), np.zeros((3, 5))
    for t in range(39, -1, -1):
        following = expected[t] = e[t] + following @ matrix
    fast = _jit(feedback_recurrence)(jnp.asarray(e, jnp.float32), jnp.asarray(a))
    np.testing.assert_allclose(fast, expected, rtol=1e-4, atol=1e-4)


def test_feedback_matrices_are_the_documented_ones():
    np.testing.assert_allclose(feedback_matrix("diagonal", 5), [0, 0.25, 0.5, 0.75, 1])
    q = np.asarray(feedback_matrix("orthogonal", 64, KEY))
    np.testing.assert_allclose(q @ q.T, np.eye(64), atol=1e-5)
    g = np.asarray(feedback_matrix("gaussian", 200, KEY))
    assert abs(g.std() * np.sqrt(200) - 1) < 0.05  # entries N(0, 1/d)
    assert 0.85 < np.abs(np.linalg.eigvals(g)).max() < 1.15  # spectral radius about 1
    np.testing.assert_array_equal(g, feedback_matrix("gaussian", 200, KEY))


@pytest.mark.parametrize("cell_name", list(CELLS))
def test_zero_feedback_is_stop_gradient_on_the_state(cell_name, assert_trees_close):
    grads = _gradients(cell_name, *BASELINES)
    assert_trees_close(grads["zero"], grads["stop"])


@pytest.mark.parametrize("cell_name", list(CELLS))
def test_exact_feedback_is_bptt(cell_name, assert_trees_close, relative_error):
    grads = _gradients(cell_name, *BASELINES)
    assert_trees_close(grads["exact"], grads["loop"])
    assert relative_error(grads["stop"], grads["loop"]) > 1e-2


@pytest.mark.parametrize(
    "cell_name,feedback",
    [("gru", "diagonal"), ("lstm", "diagonal"), ("tanh", "orthogonal")],
)  # fmt: skip
def test_feedback_gradients_match_the_written_out_method(
    cell_name, feedback, assert_trees_close, relative_error
):
    fast = _gradients(cell_name, feedback)[feedback]
    assert_trees_close(fast, _slow_grads(cell_name, feedback)(*_args(cell_name)))
    # The feedback matters: the result is neither truncated BPTT nor BPTT.
    baselines = _gradients(cell_name, *BASELINES)
    assert relative_error(fast, baselines["stop"]) > 1e-2
    assert relative_error(fast, baselines["loop"]) > 1e-2


def test_dsf_is_exact_when_the_feedback_is_the_true_jacobian(assert_trees_close):
    """For the linear diagonal recurrence ``h_t = a h_{t-1} + u_t`` with
    ``a = linspace(0, 1, d)``, ``dh_t / dh_{t-1} = diag(a)``: DSF is BPTT."""

    def linear(params, h, u):
        return params["a"] * h + u

    params = {"a": jnp.linspace(0.0, 1.0, HIDDEN)}
    h0 = jnp.ones((BATCH, HIDDEN))
    us = jax.random.normal(KEY, (T, BATCH, HIDDEN))

    def grads(params, h0, us):
        return [
            jax.grad(lambda *a, m=m: jnp.sum(jnp.sin(dsf_rnn(linear, m)(*a))), (0, 1, 2))(
                params, h0, us
            )
            for m in ("diagonal", "exact")
        ]

    assert_trees_close(*_jit(grads)(params, h0, us))


def test_gradients_reach_the_lower_layer_of_a_two_layer_stack(assert_trees_close):
    """GRU under LSTM, both DSF: the gradient to the GRU's parameters and to the inputs
    equals the written-out method applied layer by layer (the upper layer's input
    gradient becomes the lower layer's loss gradient)."""
    gru, lstm = CELLS["gru"], CELLS["lstm"]
    lower, h0_lower, xs = _setup("gru")
    upper, h0_upper, _ = _setup("lstm", HIDDEN)

    def forward(lower, upper, xs, runs):
        hs1 = runs[0](lower["recurrent"], h0_lower, gru.project(lower["input"], xs))
        us2 = lstm.project(upper["input"], gru.readout(hs1))
        return _loss("lstm", runs[1](upper["recurrent"], h0_upper, us2))

    runs = (dsf_rnn(gru.step), dsf_rnn(lstm.step))
    fast = _jit(jax.grad(forward, (0, 1, 2)), static_argnums=3)(lower, upper, xs, runs)

    @_jit
    def manual(lower, upper, xs):
        us1, project1 = jax.vjp(gru.project, lower["input"], xs)
        hs1 = _loop("gru", lower["recurrent"], h0_lower, us1)
        us2, project2 = jax.vjp(lambda p, f: lstm.project(p, gru.readout(f)), upper["input"], hs1)
        hs2 = _loop("lstm", upper["recurrent"], h0_upper, us2)
        e2 = jax.grad(lambda s: _loss("lstm", s))(hs2)
        d_rec2, _, d_us2 = _slow_dsf("lstm", "diagonal", upper["recurrent"], h0_upper, us2, e2)
        d_in2, e1 = project2(d_us2)
        d_rec1, _, d_us1 = _slow_dsf("gru", "diagonal", lower["recurrent"], h0_lower, us1, e1)
        d_in1, d_xs = project1(d_us1)
        return (
            {"input": d_in1, "recurrent": d_rec1},
            {"input": d_in2, "recurrent": d_rec2},
            d_xs,
        )

    assert_trees_close(fast, manual(lower, upper, xs))


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: dsf_rnn(CELLS["gru"].step, "bptt"), "feedback must be one of"),
        (lambda: dsf_rnn(CELLS["gru"].step, "gaussian"), "key must be a jax.random key"),
        (lambda: dsf_rnn(CELLS["gru"].step, jnp.ones((2, 3))), r"must be \[d\]"),
        (lambda: dsf_rnn("gru"), "cell_fn must be callable"),
        (
            lambda: dsf_rnn(CELLS["gru"].step, jnp.ones(5))(*_args("gru")),
            "must have 4 channels",
        ),
        (
            lambda: dsf_rnn(CELLS["gru"].step)(*_args("gru")[:2], jnp.ones((0, 2, 12))),
            "leading \\(time\\) axis",
        ),
        (
            lambda: dsf_rnn(lambda p, h, u: h[..., :2])(*_args("gru")),
            "cell_fn must return the next state with the state's shapes",
        ),
    ],
)  # fmt: skip
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()
