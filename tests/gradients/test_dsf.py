"""DSF against the library's slow references: "zero" against stop_gradient on the carried
state and "exact" against jax.grad of the plain loop (``rnn_reference``), every feedback
against the method written out step by step (``dsf_rnn_reference``), the feedback
recurrence against a loop, and a two-layer stack."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradients import (
    CELLS,
    GRU,
    LSTM,
    TANH,
    dsf_rnn,
    dsf_rnn_reference,
    feedback_matrix,
    feedback_recurrence,
    reverse_linear_recurrence,
    rnn_reference,
)
from gradients.language_model import RNNLanguageModel

_jit = jax.jit

T, BATCH, HIDDEN, INPUTS = 4, 2, 4, 3
KEY = jax.random.key(3)


@functools.cache
@functools.partial(_jit, static_argnums=(0, 1))
def _setup(cell_name: str, input_size: int = INPUTS):
    """``(params, h0, xs)`` with a non-zero initial state."""
    cell = CELLS[cell_name]
    k = jax.random.split(jax.random.key(0), 3)
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


def _loss_fn(cell_name: str, method: str):
    """The loss as a function of (recurrent params, h0, us), with the recurrence run by
    ``dsf_rnn(method)``, by the written-out ``dsf_rnn_reference(feedback)`` for
    ``method = "reference " + feedback``, or by the plain loop ("loop", "stop")."""
    step = CELLS[cell_name].step

    def loss(params, h0, us):
        if method in ("loop", "stop"):
            hs = rnn_reference(step, params, h0, us, truncate=method == "stop")
        elif method.startswith("reference "):
            hs = dsf_rnn_reference(step, method.split()[1], key=KEY)(params, h0, us)
        else:
            hs = dsf_rnn(step, method, key=KEY)(params, h0, us)
        return _loss(cell_name, hs)

    return loss


@functools.cache
def _gradients(cell_name: str, *methods: str):
    """Gradients w.r.t. (recurrent params, h0, us) for each method, in one compiled call."""
    grads = {m: jax.grad(_loss_fn(cell_name, m), argnums=(0, 1, 2)) for m in methods}
    return _jit(lambda *a: {m: g(*a) for m, g in grads.items()})(*_args(cell_name))


BASELINES = ("loop", "stop", "zero", "exact", "reference zero")
FEEDBACK_CASES = [("gru", "diagonal"), ("lstm", "diagonal"), ("tanh", "orthogonal")]


@functools.cache
def _args(cell_name):
    params, h0, xs = _setup(cell_name)
    return params["recurrent"], h0, _jit(CELLS[cell_name].project)(params["input"], xs)


def _all_gradients(cell_name):
    feedbacks = [f for c, f in FEEDBACK_CASES if c == cell_name]
    extra = [m for f in feedbacks for m in (f, f"reference {f}")]
    return _gradients(cell_name, *BASELINES, *extra)


def _loop_recurrence(e, matrix):
    """``delta_t = e_t + A^T delta_{t+1}`` by a loop over ``t``, float64 NumPy."""
    expected, following = np.zeros_like(e), np.zeros(e.shape[1:])
    for t in range(e.shape[0] - 1, -1, -1):
        following = expected[t] = e[t] + following @ matrix
    return expected


@pytest.mark.parametrize("kind", ["diagonal", "orthogonal"])
def test_feedback_recurrence_matches_a_loop(kind):
    e = np.random.default_rng(0).normal(size=(40, 3, 5))
    a = np.asarray(feedback_matrix(KEY, kind, 5), np.float64)
    expected = _loop_recurrence(e, np.diag(a) if a.ndim == 1 else a)
    fast = _jit(feedback_recurrence)(jnp.asarray(e, jnp.float32), jnp.asarray(a, jnp.float32))
    chex.assert_trees_all_close(fast, expected, rtol=1e-4, atol=1e-4)


class ReverseLinearRecurrenceTest(chex.TestCase):
    """The accumulation step of both methods, with and without jit."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_a_loop(self):
        rng = np.random.default_rng(1)
        b, a = rng.normal(size=(9, 2, 3)), rng.uniform(0.2, 1.2, size=(9, 2, 3))
        expected, following = np.zeros_like(b), np.zeros((2, 3))
        for t in range(8, -1, -1):
            following = expected[t] = b[t] + a[t] * following
        run = self.variant(reverse_linear_recurrence)
        b32, a32 = jnp.asarray(b, jnp.float32), jnp.asarray(a, jnp.float32)
        chex.assert_trees_all_close(run(b32, a32), expected, rtol=1e-5, atol=1e-5)
        # a = None: the reverse cumulative sum.
        cumsum = np.cumsum(b[::-1], 0)[::-1]
        chex.assert_trees_all_close(run(b32), cumsum, rtol=1e-5, atol=1e-5)


def test_feedback_matrices_are_the_documented_ones():
    np.testing.assert_allclose(feedback_matrix(None, "diagonal", 5), [0, 0.25, 0.5, 0.75, 1])
    matrix = _jit(feedback_matrix, static_argnums=(1, 2))
    q = np.asarray(matrix(KEY, "orthogonal", 64))
    np.testing.assert_allclose(q @ q.T, np.eye(64), atol=1e-5)
    g = np.asarray(matrix(KEY, "gaussian", 200))
    assert abs(g.std() * np.sqrt(200) - 1) < 0.05  # entries N(0, 1/d)
    assert 0.85 < np.abs(np.linalg.eigvals(g)).max() < 1.15  # spectral radius about 1
    np.testing.assert_array_equal(g, matrix(KEY, "gaussian", 200))
    # A new-style key and the legacy PRNGKey of the same seed draw the same matrix.
    np.testing.assert_array_equal(g, matrix(jax.random.PRNGKey(3), "gaussian", 200))


@pytest.mark.parametrize("cell_name", list(CELLS))
def test_zero_feedback_is_stop_gradient_on_the_state(cell_name, assert_trees_close):
    grads = _all_gradients(cell_name)
    assert_trees_close(grads["zero"], grads["stop"])
    assert_trees_close(grads["reference zero"], grads["stop"])


@pytest.mark.parametrize("cell_name", list(CELLS))
def test_exact_feedback_is_bptt(cell_name, assert_trees_close, relative_error):
    grads = _all_gradients(cell_name)
    assert_trees_close(grads["exact"], grads["loop"])
    assert relative_error(grads["stop"], grads["loop"]) > 1e-2


@pytest.mark.parametrize("cell_name,feedback", FEEDBACK_CASES)
def test_feedback_gradients_match_the_written_out_method(
    cell_name, feedback, assert_trees_close, relative_error
):
    grads = _all_gradients(cell_name)
    fast = grads[feedback]
    assert_trees_close(fast, grads[f"reference {feedback}"])
    # The feedback matters: the result is neither truncated BPTT nor BPTT.
    assert relative_error(fast, grads["stop"]) > 1e-2
    assert relative_error(fast, grads["loop"]) > 1e-2


def test_dsf_is_exact_when_the_feedback_is_the_true_jacobian(assert_trees_close):
    """For the linear diagonal recurrence ``h_t = a h_{t-1} + u_t`` with
    ``a = linspace(0, 1, d)``, ``dh_t / dh_{t-1} = diag(a)``: DSF is BPTT."""

    def linear(params, h, u):
        return params["a"] * h + u

    params = {"a": jnp.linspace(0.0, 1.0, HIDDEN)}
    h0 = jnp.ones((BATCH, HIDDEN))
    us = jnp.asarray(np.random.default_rng(2).normal(size=(T, BATCH, HIDDEN)), jnp.float32)

    def grads(params, h0, us):
        return [
            jax.grad(lambda *a, m=m: jnp.sum(jnp.sin(dsf_rnn(linear, m)(*a))), (0, 1, 2))(
                params, h0, us
            )
            for m in ("diagonal", "exact")
        ]

    assert_trees_close(*_jit(grads)(params, h0, us))


def test_gradients_reach_the_lower_layer_of_a_two_layer_stack(assert_trees_close):
    """GRU under LSTM, both DSF: the gradients to both layers' parameters and to the
    inputs equal those of the written-out method in the same stack (the upper layer's
    input gradient becomes the lower layer's loss gradient)."""
    gru, lstm = CELLS["gru"], CELLS["lstm"]
    lower, h0_lower, xs = _setup("gru")
    upper, h0_upper, _ = _setup("lstm", HIDDEN)

    def forward(lower, upper, xs, wrap):
        runs = (wrap(gru.step), wrap(lstm.step))
        hs1 = runs[0](lower["recurrent"], h0_lower, gru.project(lower["input"], xs))
        us2 = lstm.project(upper["input"], gru.readout(hs1))
        return _loss("lstm", runs[1](upper["recurrent"], h0_upper, us2))

    grads = _jit(
        lambda *a: [jax.grad(forward, (0, 1, 2))(*a, wrap) for wrap in (dsf_rnn, dsf_rnn_reference)]
    )(lower, upper, xs)
    assert_trees_close(*grads)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: dsf_rnn(CELLS["gru"].step, "bptt"), "feedback must be one of"),
        (lambda: dsf_rnn(CELLS["gru"].step, "gaussian"), "key must be a jax.random key"),
        (lambda: dsf_rnn(CELLS["gru"].step, jnp.ones((2, 3))), r"must be \[d\]"),
        (lambda: dsf_rnn("gru"), "cell_fn must be callable"),
        (lambda: GRU.init(KEY, 3, -4), "hidden must be a positive int, got -4"),
        (lambda: LSTM.init(KEY, 0, 4), "input_size must be a positive int, got 0"),
        (lambda: TANH.initial_state((2,), 0), "hidden must be a positive int, got 0"),
        (lambda: feedback_matrix(KEY, "gaussian", 0), "size must be a positive int, got 0"),
        (lambda: feedback_matrix(None, "orthogonal", 4), "key must be a jax.random key"),
        (lambda: feedback_matrix("gaussian", 4, KEY), r"the key comes first"),
        (lambda: RNNLanguageModel(0), "vocab_size must be a positive int, got 0"),
        (lambda: RNNLanguageModel(30, width=-8), "width must be a positive int, got -8"),
        (lambda: RNNLanguageModel(30, layers=0), "layers must be a positive int, got 0"),
        (lambda: RNNLanguageModel(30, cell="rnn"), "cell must be one of"),
        (lambda: RNNLanguageModel(30, feedback="bptt"), "feedback must be one of"),
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
