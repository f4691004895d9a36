"""Highway-BP against the library's slow references: k = N is jax.grad of the plain loop
(``residual_stack_reference`` / ``residual_rnn_reference``), k = 0 is the gradient with
stop_gradient on every branch input (residual paths only), and a middle k is the
iteration written out step by step (``highway_bp_reference`` / ``highway_rnn_reference``),
itself checked against the plain loop at k = 0 and k = N."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradients import (
    blocks,
    highway_bp,
    highway_bp_reference,
    highway_rnn,
    highway_rnn_reference,
    residual_rnn_reference,
    residual_stack_reference,
)

_jit = jax.jit


@dataclasses.dataclass(frozen=True)
class Case:
    """A residual structure: ``fns`` are the kinds of step (``f(p, h)`` for stacks,
    ``f(p, h, x)`` for RNNs), ``params[m]`` stacked over blocks (or shared when ``rnn``)."""

    fns: tuple[Callable, ...]
    params: tuple[Any, ...]
    h0: jax.Array
    xs: jax.Array | None = None
    residual: jax.Array | None = None

    @property
    def rnn(self) -> bool:
        return self.xs is not None

    @property
    def num_steps(self) -> int:
        if self.rnn:
            return self.xs.shape[0]
        return len(self.fns) * jax.tree.leaves(self.params[0])[0].shape[0]

    @property
    def block_fn(self):
        return self.fns if len(self.fns) > 1 else self.fns[0]

    def stacked(self, params):
        return params if len(self.fns) > 1 else params[0]


def _keys(n):
    return jax.random.split(jax.random.key(0), n)


def _mlp_arrays(residual: bool = False):
    k = _keys(3)
    r = jax.nn.sigmoid(jax.random.normal(k[2], (4, 3, 8))) if residual else None
    params = (blocks.init_mlp_blocks(k[0], 4, 8, 16),)
    return dict(params=params, h0=jax.random.normal(k[1], (3, 8)), residual=r)


def _conv_arrays():
    k = _keys(2)
    return dict(
        params=(blocks.init_conv_blocks(k[0], 3, 4),), h0=jax.random.normal(k[1], (2, 6, 6, 4))
    )


def _transformer_arrays():
    k = _keys(3)
    attention = blocks.init_attention_blocks(k[0], 2, 8, num_steps=4)
    mlp = blocks.init_mlp_blocks(k[1], 2, 8, 32, num_steps=4)
    return dict(params=(attention, mlp), h0=jax.random.normal(k[2], (2, 5, 8)))


def _rnn_arrays(residual: bool = False):
    k = _keys(4)
    return dict(
        params=(blocks.init_rnn_step(k[0], 6, 3, gain=0.9),),
        h0=0.5 * jax.random.normal(k[1], (2, 6)),
        xs=jax.random.normal(k[2], (5, 2, 3)),
        residual=0.5 + 0.5 * jax.random.uniform(k[3], (5, 2, 6)) if residual else None,
    )


STEP_FNS = {
    "mlp": (blocks.mlp_block,),
    "conv": (blocks.conv_block,),
    "transformer": (blocks.attention_block, blocks.mlp_block),
    "rnn": (blocks.rnn_step,),
    "mlp-linear-residual": (blocks.mlp_block,),
    "rnn-leaky": (blocks.rnn_step,),
}
KEY = jax.random.key(1)
# Every array drawn in one compiled call (eager random draws compile op by op).
ARRAYS = _jit(
    lambda: {
        "mlp": _mlp_arrays(),
        "conv": _conv_arrays(),
        "transformer": _transformer_arrays(),
        "rnn": _rnn_arrays(),
        "mlp-linear-residual": _mlp_arrays(residual=True),
        "rnn-leaky": _rnn_arrays(residual=True),
    }
)()
CASES = {name: Case(STEP_FNS[name], **arrays) for name, arrays in ARRAYS.items()}


def _probe(h):
    """A fixed, non-trivial read-out weight for every state shape."""
    return jnp.cos(jnp.arange(h.size, dtype=h.dtype).reshape(h.shape))


def _loss_of_states(states) -> jax.Array:
    """``sum sin(h) * w`` on ``h_N`` (stacks) or on every ``h_t`` (RNNs)."""
    return jnp.sum(jnp.sin(states) * _probe(states))


def _states(case: Case, method: str, k: int, remat: bool, params, h0, xs, residual):
    """The case's output by ``method``: ``"highway"`` (the fast path), ``"iteration"``
    (the iteration written out), ``"exact"`` / ``"stop"`` (the plain loop, without or
    with stop_gradient on every branch input)."""
    if method == "highway":
        if case.rnn:
            return highway_rnn(case.fns[0], k, remat=remat)(params[0], h0, xs, residual)
        return highway_bp(case.block_fn, k, remat=remat)(case.stacked(params), h0, residual)
    if method == "iteration":
        if case.rnn:
            return highway_rnn_reference(case.fns[0], k)(params[0], h0, xs, residual)
        return highway_bp_reference(case.block_fn, k)(case.stacked(params), h0, residual)
    stop = method == "stop"
    if case.rnn:
        return residual_rnn_reference(case.fns[0], params[0], h0, xs, residual, residual_only=stop)
    return residual_stack_reference(
        case.block_fn, case.stacked(params), h0, residual, residual_only=stop
    )


def _grad(name: str, method: str, k: int = 0, remat: bool = False):
    """Gradient of the case's loss w.r.t. (params, h0, xs, residual)."""
    case = CASES[name]

    def loss(params, h0, xs, residual):
        return _loss_of_states(_states(case, method, k, remat, params, h0, xs, residual))

    return jax.grad(loss, argnums=(0, 1, 2, 3))


def _args(name):
    case = CASES[name]
    return case.params, case.h0, case.xs, case.residual


# The written-out iteration: checked against the plain loop at k = 0 and k = N, and the
# fast path against it at k = 2, on one stack with sub-blocks and one stack and one RNN
# with a linear residual path (the other cases are these without their extras).
ITERATED = ("transformer", "mlp-linear-residual", "rnn-leaky")


@functools.cache
def _gradients(name: str):
    """Every gradient the tests compare, for one case, in one compiled call: the plain
    loop (exact, residual paths only), Highway-BP at k = 0 and N, and for the
    ``ITERATED`` cases Highway-BP at k = 2 and the iteration written out at k = 0, 2, N."""
    n = CASES[name].num_steps
    fns = {
        "exact": _grad(name, "exact"),
        "stop": _grad(name, "stop"),
        "k=0": _grad(name, "highway", 0),
        "k=N": _grad(name, "highway", n),
    }
    if name in ITERATED:
        fns["k=2"] = _grad(name, "highway", 2)
        for k in (0, 2, n):
            fns[f"iteration k={'N' if k == n else k}"] = _grad(name, "iteration", k)
    return _jit(lambda *args: {key: f(*args) for key, f in fns.items()})(*_args(name))


# "mlp" alone is left out: the transformer case runs the same blocks as one of its kinds.
STRUCTURES = [name for name in CASES if name != "mlp"]


@pytest.mark.parametrize("name", STRUCTURES)
def test_k_equal_to_steps_is_exact(name, assert_trees_close):
    grads = _gradients(name)
    assert_trees_close(grads["k=N"], grads["exact"])


@pytest.mark.parametrize("name", STRUCTURES)
def test_k_zero_is_the_residual_path_gradient(name, assert_trees_close, relative_error):
    grads = _gradients(name)
    assert_trees_close(grads["k=0"], grads["stop"])
    # ... which is a different gradient from the exact one.
    assert relative_error(grads["stop"], grads["exact"]) > 1e-2


@pytest.mark.parametrize("name", ITERATED)
def test_intermediate_k_matches_the_written_out_iteration(name, assert_trees_close, relative_error):
    grads = _gradients(name)
    # The written-out iteration is the plain loop's gradient at both ends ...
    assert_trees_close(grads["iteration k=0"], grads["stop"])
    assert_trees_close(grads["iteration k=N"], grads["exact"])
    # ... and the fast path follows it in between (every output: params, h0, xs, r).
    assert_trees_close(grads["k=2"], grads["iteration k=2"])
    # k = 2 < N is neither end: the comparison is not one of the two above again.
    assert relative_error(grads["k=2"], grads["exact"]) > 1e-4
    assert relative_error(grads["k=2"], grads["stop"]) > 1e-3


def test_recompute_gives_the_same_gradient():
    for name in ("mlp-linear-residual", "rnn-leaky"):
        remat = _jit(_grad(name, "highway", 2, remat=True))(*_args(name))
        chex.assert_trees_all_close(remat, _gradients(name)["k=2"], rtol=1e-5, atol=1e-6)


def test_trains_under_jit_with_optax():
    """A drop-in inside an ordinary jitted optax step: k = 1 Highway-BP fits a target."""
    case = CASES["mlp"]
    stack = highway_bp(blocks.mlp_block, 1)
    target = jnp.tanh(case.h0[::-1])
    optimizer = optax.adam(1e-2)

    def loss(params):
        return jnp.mean(jnp.square(stack(params, case.h0) - target))

    @jax.jit
    def step(params, opt_state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, value

    params, opt_state = case.params[0], optimizer.init(case.params[0])
    first = None
    for _ in range(60):
        params, opt_state, value = step(params, opt_state)
        first = value if first is None else first
    _, _, last = step(params, opt_state)
    assert float(last) < 0.2 * float(first)


def test_initialisers_take_new_style_keys():
    """``jax.random.key`` and the legacy ``PRNGKey`` of one seed give the same draws."""
    init = _jit(lambda key: blocks.init_mlp_blocks(key, 2, 4, 8))
    chex.assert_trees_all_equal(init(jax.random.key(5)), init(jax.random.PRNGKey(5)))


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda c: highway_bp(blocks.mlp_block, -1), "k must be an int >= 0, got -1"),
        (lambda c: highway_bp(blocks.mlp_block, True), "k must be an int >= 0"),
        (lambda c: highway_bp("mlp", 1), "block_fn must be a callable"),
        (lambda c: highway_rnn(None, 1), "step_fn must be callable"),
        (lambda c: highway_bp_reference(blocks.mlp_block, -2), "k must be an int >= 0, got -2"),
        (
            lambda c: blocks.init_mlp_blocks(KEY, 0, 8, 16),
            "num_blocks must be a positive int, got 0",
        ),
        (
            lambda c: blocks.init_mlp_blocks(KEY, 2, 8, -16),
            "hidden must be a positive int, got -16",
        ),
        (
            lambda c: blocks.init_mlp_blocks(KEY, 2, 8, 16, num_steps=0),
            "num_steps must be a positive int, got 0",
        ),
        (
            lambda c: blocks.init_conv_blocks(KEY, 2, 4, kernel_size=0),
            "kernel_size must be a positive int, got 0",
        ),
        (
            lambda c: blocks.init_attention_blocks(KEY, 2, 8.0),
            "width must be a positive int, got 8.0",
        ),
        (
            lambda c: blocks.init_rnn_step(KEY, 6, True),
            "input_size must be a positive int, got True",
        ),
        (
            lambda c: blocks.init_rnn_step(KEY, 6, 3, gain=-0.5),
            "gain must be a finite number > 0, got -0.5",
        ),
        (
            lambda c: highway_bp(blocks.mlp_block, 1)(
                {**c.params[0], "b2": c.params[0]["b2"][:2]}, c.h0
            ),
            "one leading (block) axis",
        ),
        (
            lambda c: highway_bp(blocks.mlp_block, 1)(c.params[0], c.h0, jnp.ones((3, 3, 8))),
            "residual must match h0 with a leading axis of 4 steps",
        ),
        (
            lambda c: highway_bp(lambda p, h: h[..., :2], 1)(c.params[0], c.h0),
            "block_fn must return an update with the state's shapes",
        ),
        (
            lambda c: highway_bp((blocks.mlp_block, blocks.mlp_block), 1)(c.params[0], c.h0),
            "stacked_params must be a tuple of 2",
        ),
        (
            lambda c: highway_rnn(blocks.rnn_step, 1)(
                CASES["rnn"].params[0], CASES["rnn"].h0, jnp.ones((0, 2, 3))
            ),
            "leading (time) axis of length >= 1",
        ),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(CASES["mlp"])


@pytest.mark.parametrize("size", [3, 4])
def test_block_convolution_is_lax_convolution(size):
    rng = np.random.default_rng(size)
    kernel = rng.standard_normal((size, size, 3, 5), np.float32)
    h = rng.standard_normal((2, 6, 7, 3), np.float32)
    expected = _jit(
        lambda h, k: jax.lax.conv_general_dilated(
            h, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    )(h, kernel)
    fast = _jit(blocks.conv2d)(h, kernel, jnp.ones(5))
    np.testing.assert_allclose(fast, expected + 1, atol=1e-4)
