"""Highway-BP against explicit references: k = N is jax.grad of a plain loop, k = 0 is the
gradient with stop_gradient on every branch input (residual paths only), and a middle k
is a slow, step-by-step transcription of the iteration."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradients import blocks, highway_bp, highway_rnn

# Test programs are tiny: skip LLVM's optimisations, which dominate their compile time.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


@dataclasses.dataclass(frozen=True)
class Case:
    """A residual structure: ``fns[m]`` are the kinds of step (``f(p, h, x)``),
    ``params[m]`` stacked over blocks (or shared when ``rnn``)."""

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

    def step_params(self, s: int):
        if self.rnn:
            return self.params[0]
        i, m = divmod(s, len(self.fns))
        return jax.tree.map(lambda a: a[i], self.params[m])

    def step_fn(self, s: int) -> Callable:
        return self.fns[s % len(self.fns)]

    def step_input(self, s: int):
        return None if self.xs is None else self.xs[s]


def _ignore_x(f):
    return lambda p, h, x: f(p, h)


def _keys(n):
    return jax.random.split(jax.random.PRNGKey(0), n)


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
    "mlp": (_ignore_x(blocks.mlp_block),),
    "conv": (_ignore_x(blocks.conv_block),),
    "transformer": (_ignore_x(blocks.attention_block), _ignore_x(blocks.mlp_block)),
    "rnn": (blocks.rnn_step,),
    "mlp-linear-residual": (_ignore_x(blocks.mlp_block),),
    "rnn-leaky": (blocks.rnn_step,),
}
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


def _loss_of_states(case: Case, states) -> jax.Array:
    """``sum sin(h) * w`` on ``h_N`` (stacks) or on every ``h_t`` (RNNs)."""
    return jnp.sum(jnp.sin(states) * _probe(states))


def _reference_states(case: Case, params, h0, xs, residual, stop: bool):
    """Plain Python loop over steps; ``stop``: stop_gradient on every branch input."""
    case = dataclasses.replace(case, params=params, xs=xs)
    h, states = h0, []
    for s in range(case.num_steps):
        branch = case.step_fn(s)(
            case.step_params(s), jax.lax.stop_gradient(h) if stop else h, case.step_input(s)
        )
        h = (h if residual is None else residual[s] * h) + branch
        states.append(h)
    return jnp.stack(states) if case.rnn else h


def _highway_states(case: Case, k: int, remat: bool, params, h0, xs, residual):
    if case.rnn:
        return highway_rnn(case.fns[0], k, remat=remat)(params[0], h0, xs, residual)
    fns = tuple(lambda p, h, f=f: f(p, h, None) for f in case.fns)
    block_fn = fns if len(fns) > 1 else fns[0]
    stacked = params if len(fns) > 1 else params[0]
    return highway_bp(block_fn, k, remat=remat)(stacked, h0, residual)


def _loss_fn(name: str, method: str, k: int = 0, remat: bool = False):
    """The case's loss as a function of (params, h0, xs, residual), run by Highway-BP
    (``method="highway"``) or by the plain loop (``"exact"``, ``"stop"``)."""
    case = CASES[name]

    def loss(params, h0, xs, residual):
        if method == "highway":
            states = _highway_states(case, k, remat, params, h0, xs, residual)
        else:
            states = _reference_states(case, params, h0, xs, residual, stop=method == "stop")
        return _loss_of_states(case, states)

    return loss


def _grad(loss):
    return jax.grad(loss, argnums=(0, 1, 2, 3))


def _args(name):
    case = CASES[name]
    return case.params, case.h0, case.xs, case.residual


@functools.cache
def _four_gradients(name: str):
    """Exact, stop-gradient, Highway-BP k = N and k = 0 gradients, in one compiled call."""
    n = CASES[name].num_steps
    fns = {
        "exact": _grad(_loss_fn(name, "exact")),
        "stop": _grad(_loss_fn(name, "stop")),
        "k=N": _grad(_loss_fn(name, "highway", n)),
        "k=0": _grad(_loss_fn(name, "highway", 0)),
    }
    return _jit(lambda *args: {key: f(*args) for key, f in fns.items()})(*_args(name))


@functools.cache
def _highway_grads(name: str, k: int, remat: bool = False):
    return _jit(_grad(_loss_fn(name, "highway", k, remat)))(*_args(name))


@pytest.mark.parametrize("name", list(CASES))
def test_k_equal_to_steps_is_exact(name, assert_trees_close):
    grads = _four_gradients(name)
    assert_trees_close(grads["k=N"], grads["exact"])


@pytest.mark.parametrize("name", list(CASES))
def test_k_zero_is_the_residual_path_gradient(name, assert_trees_close, relative_error):
    grads = _four_gradients(name)
    assert_trees_close(grads["k=0"], grads["stop"])
    # ... which is a different gradient from the exact one.
    assert relative_error(grads["stop"], grads["exact"]) > 1e-2


@functools.partial(_jit, static_argnums=(0, 1))
def _slow_highway(name: str, k: int):
    """The iteration of the spec, one step and one Python loop at a time (jitted only to
    run fast), returning the gradient w.r.t. (per-step params, h0, per-step xs, residual)."""
    case = CASES[name]
    n = case.num_steps
    states = [case.h0]
    for s in range(n):
        update = case.step_fn(s)(case.step_params(s), states[-1], case.step_input(s))
        r = 1.0 if case.residual is None else case.residual[s]
        states.append(r * states[-1] + update)
    outputs = jnp.stack(states[1:]) if case.rnn else states[-1]
    e_all = jax.grad(lambda o: _loss_of_states(case, o))(outputs)
    e = [e_all[s] if case.rnn else (e_all if s == n - 1 else 0 * e_all) for s in range(n)]
    vjps = [
        jax.vjp(case.step_fn(s), case.step_params(s), states[s], case.step_input(s))[1]
        for s in range(n)
    ]
    r = [1.0 if case.residual is None else case.residual[s] for s in range(n)]

    def accumulate(v):
        """out_s = e_s + r_{s+1} out_{s+1} + v_{s+1}; dl/dh0 = r_0 out_0 + v_0."""
        out = [None] * n
        out[n - 1] = e[n - 1]
        for s in range(n - 2, -1, -1):
            out[s] = e[s] + r[s + 1] * out[s + 1] + v[s + 1]
        return out, r[0] * out[0] + v[0]

    out, d_h0 = accumulate([0.0] * n)
    for _ in range(k):
        out, d_h0 = accumulate([vjps[s](out[s])[1] for s in range(n)])
    pulled = [vjps[s](out[s]) for s in range(n)]
    d_residual = (
        None if case.residual is None else jnp.stack([out[s] * states[s] for s in range(n)])
    )
    return [p[0] for p in pulled], d_h0, [p[2] for p in pulled], d_residual


@pytest.mark.parametrize("name", ["mlp-linear-residual", "rnn-leaky"])
def test_intermediate_k_matches_the_step_by_step_iteration(name, assert_trees_close):
    case = CASES[name]
    d_step_params, d_h0, d_xs, d_residual = _slow_highway(name, 2)
    d_params, fast_h0, fast_xs, fast_residual = _highway_grads(name, 2)
    if case.rnn:
        expected_params = (jax.tree.map(lambda *a: sum(a), *d_step_params),)
        assert_trees_close(fast_xs, jnp.stack(d_xs))
    else:  # back to [L, ...] stacks per kind of sub-block
        kinds = len(case.fns)
        expected_params = tuple(
            jax.tree.map(lambda *a: jnp.stack(a), *d_step_params[m::kinds]) for m in range(kinds)
        )
    assert_trees_close(d_params, expected_params)
    assert_trees_close(fast_h0, d_h0)
    if case.residual is not None:
        assert_trees_close(fast_residual, d_residual)


def test_recompute_gives_the_same_gradient(assert_trees_close):
    for name in ("mlp-linear-residual", "rnn-leaky"):
        assert_trees_close(_highway_grads(name, 2, remat=True), _highway_grads(name, 2))


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
    assert float(loss(params)) < 0.2 * float(first)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda c: highway_bp(blocks.mlp_block, -1), "k must be an int >= 0, got -1"),
        (lambda c: highway_bp(blocks.mlp_block, True), "k must be an int >= 0"),
        (lambda c: highway_bp("mlp", 1), "block_fn must be a callable"),
        (lambda c: highway_rnn(None, 1), "step_fn must be callable"),
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
    k = _keys(2)
    kernel = jax.random.normal(k[0], (size, size, 3, 5))
    h = jax.random.normal(k[1], (2, 6, 7, 3))
    expected = _jit(
        lambda h, k: jax.lax.conv_general_dilated(
            h, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    )(h, kernel)
    fast = _jit(blocks.conv2d)(h, kernel, jnp.ones(5))
    np.testing.assert_allclose(fast, expected + 1, atol=1e-4)
