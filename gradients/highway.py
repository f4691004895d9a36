"""Highway backpropagation (Highway-BP) for residual stacks and residual RNNs, as custom VJPs.

Residual steps ``h_{s+1} = r_s * h_s + f_s(h_s)``, ``s = 0..N-1`` (``r_s = 1`` for an
ordinary residual connection). With ``out_s = dl/dh_{s+1}``, ``e_s`` the loss's direct
gradient at ``h_{s+1}`` and ``v_s = J_{f_s}(h_s)^T out_s``, exact backpropagation is the
triangular system

    out_s = e_s + r_{s+1} * out_{s+1} + v_{s+1}          (out_{N-1} = e_{N-1})
    dl/dh_0 = r_0 * out_0 + v_0

Highway-BP (arXiv 2501.17086) solves it by Jacobi iteration: start from the
residual-path-only solution (all ``v = 0``), then ``k`` times compute every ``v_s`` at
once from the current ``out`` (one ``vmap``-ed VJP over all steps) and re-accumulate
(a reverse cumulative sum, or ``lax.associative_scan`` when ``r != 1``). Iteration
``t`` makes the last ``t + 1`` cotangents exact, so ``k >= N`` gives the exact
gradient; ``k = 0`` keeps only the paths along the residual connections. Parameter
(and per-step input) gradients come from one more application of the same batched VJP
at the final ``out``: ``k + 1`` batched VJPs in sequence instead of ``N`` sequential
ones.

Three front ends share one core:

- ``highway_bp(block_fn, k)``: a stack of ``L`` blocks with stacked parameters,
  ``stack(stacked_params, h0, residual=None) -> h_L``. ``block_fn`` may be a tuple of
  sub-block functions (a Transformer block: ``(attention_fn, mlp_fn)``), each its own
  residual step, so a stack of ``L`` blocks has ``N = M L`` steps.
- ``highway_rnn(step_fn, k)``: a residual RNN unrolled in time with shared
  parameters, an input per step and a loss on every state,
  ``run(params, h0, xs, residual=None) -> hs``.
- ``residual`` (both): the linear, non-identity residual path ``r_s``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp

from gradients.checks import check_leading_axis, check_maps_state
from gradients.recurrence import reverse_linear_recurrence

PyTree = Any


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be an int >= 0, got {k!r}")


def _check_residual(residual: PyTree, h0: PyTree, num_steps: int) -> None:
    """``residual`` must hold, per leaf of ``h0``, an array ``[num_steps, *h.shape]``."""
    if residual is None:
        return
    want = jax.tree.map(lambda h: (num_steps, *jnp.shape(h)), h0)
    got = jax.tree.map(jnp.shape, residual)
    if jax.tree.structure(residual) != jax.tree.structure(h0) or want != got:
        raise ValueError(
            f"residual must match h0 with a leading axis of {num_steps} steps: expected "
            f"shapes {want}, got {got}"
        )


def _highway_core(
    step_fns: tuple[Callable, ...], k: int, *, remat: bool, stacked: bool, all_states: bool
) -> Callable:
    """``run(params, h0, xs, residual) -> h_N`` (or ``hs [N, ...]``) with a Highway-BP VJP.

    ``step_fns[m](p, h, x) -> f(h)``; step ``s = i M + m`` uses ``step_fns[m]`` with
    parameters ``params[m][i]`` (``stacked``) or ``params[m]`` (shared), input ``x_s``
    (``xs[s]``, or ``None`` when ``xs`` is ``None``) and residual ``r_s``
    (``residual[s]``, or 1). ``all_states``: return every ``h_{s+1}`` (a loss on each)
    instead of only ``h_N``.
    """
    fns = tuple(jax.checkpoint(f) if remat else f for f in step_fns)
    kinds = len(fns)
    param_axis = 0 if stacked else None

    def by_block(tree: PyTree) -> PyTree:
        """``[N, ...]`` -> ``[L, M, ...]``."""
        return jax.tree.map(lambda a: a.reshape(-1, kinds, *a.shape[1:]), tree)

    def by_step(tree: PyTree) -> PyTree:
        """``[L, M, ...]`` -> ``[N, ...]``."""
        return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), tree)

    def pick(tree: PyTree, m: int) -> PyTree:
        return jax.tree.map(lambda a: a[:, m], tree)

    def states(params, h0, xs, residual):
        """Forward ``lax.scan`` over blocks: ``(h_N, step inputs hs_in [N, ...])``."""

        def block(h, scanned):
            block_params, x, r = scanned
            block_params = block_params if stacked else params
            inputs = []
            for m in range(kinds):
                inputs.append(h)
                x_m = jax.tree.map(lambda a, m=m: a[m], x)
                update = fns[m](block_params[m], h, x_m)
                if r is None:
                    h = jax.tree.map(jnp.add, h, update)
                else:
                    h = jax.tree.map(lambda h_, u, r_, m=m: r_[m] * h_ + u, h, update, r)
            return h, jax.tree.map(lambda *a: jnp.stack(a), *inputs)

        scanned = (params if stacked else None, by_block(xs), by_block(residual))
        h_last, inputs = jax.lax.scan(block, h0, scanned)
        return h_last, by_step(inputs)

    def updates(params, hs_in, xs):
        """All ``f_s(h_s)`` at once, one ``vmap`` per kind of step: ``[N, ...]``."""
        hs_b, xs_b = by_block(hs_in), by_block(xs)
        outs = [
            jax.vmap(fns[m], in_axes=(param_axis, 0, 0))(params[m], pick(hs_b, m), pick(xs_b, m))
            for m in range(kinds)
        ]
        return by_step(jax.tree.map(lambda *a: jnp.stack(a, axis=1), *outs))

    def primal(params, h0, xs, residual):
        h_last, hs_in = states(params, h0, xs, residual)
        return _all_states(hs_in, h_last) if all_states else h_last

    run = jax.custom_vjp(primal)

    def fwd(params, h0, xs, residual):
        h_last, hs_in = states(params, h0, xs, residual)
        saved = (params, h0, xs, residual, None if remat else hs_in)
        return (_all_states(hs_in, h_last) if all_states else h_last), saved

    def bwd(saved, cotangent):
        params, h0, xs, residual, hs_in = saved
        if hs_in is None:
            hs_in = states(params, h0, xs, residual)[1]
        if all_states:
            e = cotangent
        else:  # only h_N is an output: the loss's gradient enters at the last step
            e = jax.tree.map(
                lambda h, c: jnp.zeros_like(h).at[-1].set(c.astype(h.dtype)), hs_in, cotangent
            )
        _, vjp = jax.vjp(updates, params, hs_in, xs)
        # One recurrence of length N + 1 gives dl/dh_0 (index 0) and every out_s (1..N):
        # c_j = b_j + a_j c_{j+1} with b_j = e_{j-1} + v_j and a_j = r_j.
        coeffs = (
            None
            if residual is None
            else jax.tree.map(lambda r: jnp.concatenate([r, jnp.ones_like(r[:1])]), residual)
        )

        def accumulate(v):
            b = jax.tree.map(
                lambda e_, v_: (
                    jnp.concatenate([jnp.zeros_like(e_[:1]), e_])
                    + jnp.concatenate([v_, jnp.zeros_like(v_[:1])])
                ),
                e,
                v,
            )
            return reverse_linear_recurrence(b, coeffs)

        def outs(c):
            return jax.tree.map(lambda a: a[1:], c)

        def iterate(_, c):
            return accumulate(vjp(outs(c))[1])

        c = accumulate(jax.tree.map(jnp.zeros_like, hs_in))
        c = jax.lax.fori_loop(0, min(k, _num_steps(hs_in)), iterate, c)
        d_params, _, d_xs = vjp(outs(c))
        d_h0 = jax.tree.map(lambda a: a[0], c)
        chex.assert_trees_all_equal_shapes(d_h0, h0)
        d_residual = None if residual is None else jax.tree.map(jnp.multiply, outs(c), hs_in)
        return d_params, d_h0, d_xs, d_residual

    run.defvjp(fwd, bwd)
    return run


def _num_steps(hs: PyTree) -> int:
    return jax.tree.leaves(hs)[0].shape[0]


def _all_states(hs_in: PyTree, h_last: PyTree) -> PyTree:
    """``h_1 .. h_N`` from the step inputs ``h_0 .. h_{N-1}`` and ``h_N``."""
    return jax.tree.map(lambda a, h: jnp.concatenate([a[1:], h[None]]), hs_in, h_last)


def highway_bp(
    block_fn: Callable | Sequence[Callable], k: int, *, remat: bool = False
) -> Callable[..., PyTree]:
    """Wrap a residual stack so that its backward pass is Highway-BP with ``k`` iterations.

    Args:
      block_fn: ``block_fn(theta_i, h) -> g_i(h)``, the residual branch of one block
        (the wrapper adds ``h``). A tuple ``(f_1, ..., f_M)`` makes each block ``M``
        residual steps in turn, e.g. ``(attention_fn, mlp_fn)`` for a Transformer
        block; the stack then has ``N = M L`` steps.
      k: Highway-BP iterations, ``>= 0``. ``k = 0``: residual paths only; ``k >= N``:
        the exact gradient (iterations beyond ``N`` change nothing and are skipped).
      remat: keep only ``h0`` from the forward pass and recompute the block inputs in
        the backward pass, with each block under ``jax.checkpoint`` (its internals are
        recomputed in every batched VJP rather than held across the ``k``
        iterations). Default: store all ``N`` block inputs.

    Returns:
      ``stack(stacked_params, h0, residual=None) -> h_L``:

      - ``stacked_params``: the blocks' parameters stacked along a leading axis of
        length ``L`` (a tuple of ``M`` such pytrees when ``block_fn`` is a tuple);
      - ``h0``: the input state (any pytree of arrays, e.g. ``[batch, dim]`` or
        ``[batch, height, width, channels]``), which every block maps to the same shapes;
      - ``residual``: ``None`` (identity residual) or the linear residual path of
        every step, ``h_s = r_s * h_{s-1} + g_s(h_{s-1})`` elementwise, as a pytree
        like ``h0`` with leaves ``[N, *h.shape]`` (broadcast a per-channel gate
        yourself: autodiff sums its gradient back); its gradient is returned too.

      The forward pass is a ``lax.scan`` over blocks; ``jax.grad``, ``jax.jit`` and
      ``jax.vmap`` compose with it as with any function.
    """
    fns = tuple(block_fn) if isinstance(block_fn, Sequence) else (block_fn,)
    if not fns or not all(callable(f) for f in fns):
        raise ValueError(f"block_fn must be a callable or a tuple of callables, got {block_fn!r}")
    _check_k(k)
    core = _highway_core(
        tuple(lambda p, h, x, f=f: f(p, h) for f in fns),
        k,
        remat=remat,
        stacked=True,
        all_states=False,
    )
    multi = isinstance(block_fn, Sequence)

    def stack(stacked_params: PyTree, h0: PyTree, residual: PyTree = None) -> PyTree:
        if multi and (not isinstance(stacked_params, Sequence) or len(stacked_params) != len(fns)):
            raise ValueError(
                f"stacked_params must be a tuple of {len(fns)} stacked pytrees (one per "
                f"sub-block function), got {type(stacked_params).__name__}"
            )
        params = tuple(stacked_params) if multi else (stacked_params,)
        num_blocks = check_leading_axis(params, "stacked_params", "block")
        for m, f in enumerate(fns):
            first = jax.tree.map(lambda a: a[0], params[m])
            check_maps_state(f, (first, h0), h0, "block_fn", "an update")
        _check_residual(residual, h0, num_blocks * len(fns))
        return core(params, h0, None, residual)

    return stack


def highway_rnn(step_fn: Callable, k: int, *, remat: bool = False) -> Callable[..., PyTree]:
    """Wrap a residual RNN so that backpropagation through time is Highway-BP.

    The recurrence ``h_t = r_t * h_{t-1} + step_fn(params, h_{t-1}, x_t)`` (``r_t = 1``
    by default) is unrolled over ``T`` steps with shared ``params``; the loss may use
    every state, and its gradient ``e_t`` at each ``h_t`` enters the accumulation at
    step ``t``. ``k = T`` is exact BPTT; ``k = 0`` propagates along the residual path
    only.

    Args:
      step_fn: ``step_fn(params, h_prev, x_t) -> update`` shaped like ``h_prev``.
      k: Highway-BP iterations, ``>= 0``.
      remat: recompute the states in the backward pass (see ``highway_bp``).

    Returns:
      ``run(params, h0, xs, residual=None) -> hs``: ``xs`` a pytree of ``[T, ...]``
      (time-major, as ``lax.scan``), ``hs`` the states ``h_1 .. h_T`` with leaves
      ``[T, *h.shape]``; ``residual`` as in ``highway_bp`` with ``N = T``.
    """
    if not callable(step_fn):
        raise ValueError(f"step_fn must be callable, got {step_fn!r}")
    _check_k(k)
    core = _highway_core((step_fn,), k, remat=remat, stacked=False, all_states=True)

    def run(params: PyTree, h0: PyTree, xs: PyTree, residual: PyTree = None) -> PyTree:
        length = check_leading_axis(xs, "xs", "time")
        first = jax.tree.map(lambda a: a[0], xs)
        check_maps_state(step_fn, (params, h0, first), h0, "step_fn", "an update")
        _check_residual(residual, h0, length)
        return core((params,), h0, xs, residual)

    return run


# ----------------------------------------------------------------------------------------
# Slow references: plain Python loops over the steps, for tests and for checking runs.


def _tree_add(*trees: PyTree) -> PyTree:
    return jax.tree.map(lambda *a: sum(a[1:], a[0]), *trees)


def _tree_scale(r: PyTree | None, tree: PyTree) -> PyTree:
    """``r * tree`` leaf by leaf (``r = None`` is 1)."""
    return tree if r is None else jax.tree.map(jnp.multiply, r, tree)


def _at(tree: PyTree, i: int) -> PyTree:
    return None if tree is None else jax.tree.map(lambda a: a[i], tree)


def _stack(trees: Sequence[PyTree]) -> PyTree:
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def _steps(step_fns: tuple[Callable, ...], params: tuple, stacked: bool, xs: PyTree, n: int):
    """``[(f_s, theta_s, x_s)]`` for ``s = 0 .. n-1``: step ``s = i M + m`` is kind ``m``."""
    kinds = len(step_fns)
    return [
        (
            step_fns[s % kinds],
            _at(params[s % kinds], s // kinds) if stacked else params[0],
            _at(xs, s),
        )
        for s in range(n)
    ]


def _loop_states(steps, h0: PyTree, residual: PyTree, residual_only: bool) -> list[PyTree]:
    """``[h_0, ..., h_N]`` with ``h_{s+1} = r_s h_s + f_s(theta_s, h_s, x_s)``."""
    states = [h0]
    for s, (f, theta, x) in enumerate(steps):
        h = states[-1]
        branch = f(theta, jax.lax.stop_gradient(h) if residual_only else h, x)
        states.append(_tree_add(_tree_scale(_at(residual, s), h), branch))
    return states


def _num_stack_steps(block_fns: tuple[Callable, ...], stacked_params: PyTree) -> tuple:
    params = tuple(stacked_params) if len(block_fns) > 1 else (stacked_params,)
    return params, len(block_fns) * jax.tree.leaves(params[0])[0].shape[0]


def _as_fns(fn: Callable | Sequence[Callable]) -> tuple[Callable, ...]:
    return tuple(fn) if isinstance(fn, Sequence) else (fn,)


def residual_stack_reference(
    block_fn: Callable | Sequence[Callable],
    stacked_params: PyTree,
    h0: PyTree,
    residual: PyTree = None,
    *,
    residual_only: bool = False,
) -> PyTree:
    """The residual stack of ``highway_bp`` as a plain Python loop: ``h_L``.

    ``h_s = r_s * h_{s-1} + g_s(theta_s, h_{s-1})`` for ``s = 1 .. N`` with the arguments
    of ``highway_bp``'s ``stack`` (``block_fn`` a function or a tuple of ``M`` sub-block
    functions; ``stacked_params`` stacked over ``L`` blocks; ``residual`` leaves
    ``[N, *h.shape]`` or ``None``). Autodiff of the loop is exact backpropagation, the
    gradient of ``highway_bp`` with ``k >= N``. ``residual_only=True`` puts
    ``stop_gradient`` on every branch input, so that the gradient follows the residual
    paths only: Highway-BP's gradient at ``k = 0``.
    """
    fns = _as_fns(block_fn)
    params, n = _num_stack_steps(fns, stacked_params)
    steps = _steps(tuple(lambda p, h, x, f=f: f(p, h) for f in fns), params, True, None, n)
    return _loop_states(steps, h0, residual, residual_only)[-1]


def residual_rnn_reference(
    step_fn: Callable,
    params: PyTree,
    h0: PyTree,
    xs: PyTree,
    residual: PyTree = None,
    *,
    residual_only: bool = False,
) -> PyTree:
    """The residual RNN of ``highway_rnn`` as a plain Python loop over time: ``hs``.

    ``h_t = r_t * h_{t-1} + step_fn(params, h_{t-1}, x_t)``, ``xs`` leaves ``[T, ...]``,
    returns ``h_1 .. h_T`` with leaves ``[T, *h.shape]``. Autodiff of the loop is exact
    BPTT (``highway_rnn`` with ``k >= T``); ``residual_only=True`` stops the gradient at
    every branch input (``k = 0``).
    """
    n = jax.tree.leaves(xs)[0].shape[0]
    steps = _steps((step_fn,), (params,), False, xs, n)
    return _stack(_loop_states(steps, h0, residual, residual_only)[1:])


def _jacobi_reference(step_fns: tuple[Callable, ...], k: int, *, stacked: bool, rnn: bool):
    """``run(params, h0, xs, residual)``: a loop forward, Highway-BP written out backward."""

    def num_steps(params, xs):
        if rnn:
            return jax.tree.leaves(xs)[0].shape[0]
        return len(step_fns) * jax.tree.leaves(params[0])[0].shape[0]

    def states_of(params, h0, xs, residual):
        steps = _steps(step_fns, params, stacked, xs, num_steps(params, xs))
        return steps, _loop_states(steps, h0, residual, False)

    def output(states):
        return _stack(states[1:]) if rnn else states[-1]

    @jax.custom_vjp
    def run(params, h0, xs, residual):
        return output(states_of(params, h0, xs, residual)[1])

    def fwd(params, h0, xs, residual):
        steps, states = states_of(params, h0, xs, residual)
        return output(states), (params, h0, xs, residual)

    def bwd(saved, cotangent):
        params, h0, xs, residual = saved
        steps, states = states_of(params, h0, xs, residual)
        n = len(steps)
        zero = jax.tree.map(jnp.zeros_like, h0)
        # e_s: the loss's gradient at h_{s+1}.
        e = [_at(cotangent, s) if rnn else (cotangent if s == n - 1 else zero) for s in range(n)]
        r = [_at(residual, s) for s in range(n)]
        vjps = [jax.vjp(f, theta, states[s], x)[1] for s, (f, theta, x) in enumerate(steps)]

        def accumulate(v):
            """``out_s = e_s + r_{s+1} out_{s+1} + v_{s+1}``; ``dl/dh_0 = r_0 out_0 + v_0``."""
            out = [None] * n
            out[n - 1] = e[n - 1]
            for s in range(n - 2, -1, -1):
                out[s] = _tree_add(e[s], _tree_scale(r[s + 1], out[s + 1]), v[s + 1])
            return out, _tree_add(_tree_scale(r[0], out[0]), v[0])

        out, d_h0 = accumulate([zero] * n)
        for _ in range(k):  # v_s = J_{f_s}(h_s)^T out_s for every s, then re-accumulate
            out, d_h0 = accumulate([vjps[s](out[s])[1] for s in range(n)])
        pulled = [vjps[s](out[s]) for s in range(n)]
        if stacked:
            kinds = len(step_fns)
            d_params = tuple(_stack([p[0] for p in pulled[m::kinds]]) for m in range(kinds))
        else:
            d_params = (_tree_add(*[p[0] for p in pulled]),)
        d_xs = None if xs is None else _stack([p[2] for p in pulled])
        d_residual = None
        if residual is not None:
            d_residual = _stack([jax.tree.map(jnp.multiply, out[s], states[s]) for s in range(n)])
        return d_params, d_h0, d_xs, d_residual

    run.defvjp(fwd, bwd)
    return run


def highway_bp_reference(block_fn: Callable | Sequence[Callable], k: int) -> Callable[..., PyTree]:
    """``highway_bp(block_fn, k)`` written out step by step, for checking the fast path.

    The same ``stack(stacked_params, h0, residual=None) -> h_L``; the forward pass is
    ``residual_stack_reference`` and the backward pass the iteration of the module
    docstring with one Python loop per sweep and one VJP per step: start from
    ``out_s = e_s + r_{s+1} out_{s+1}`` (residual paths only), then ``k`` times compute
    ``v_s = J_{f_s}(h_s)^T out_s`` for every step and re-accumulate
    ``out_s = e_s + r_{s+1} out_{s+1} + v_{s+1}``; the parameter gradients are the VJPs
    at the final ``out``. ``O(k N)`` sequential VJPs: for tests only.
    """
    _check_k(k)
    fns = _as_fns(block_fn)
    run = _jacobi_reference(
        tuple(lambda p, h, x, f=f: f(p, h) for f in fns), k, stacked=True, rnn=False
    )

    def stack(stacked_params: PyTree, h0: PyTree, residual: PyTree = None) -> PyTree:
        params, _ = _num_stack_steps(fns, stacked_params)
        return run(params, h0, None, residual)

    return stack


def highway_rnn_reference(step_fn: Callable, k: int) -> Callable[..., PyTree]:
    """``highway_rnn(step_fn, k)`` written out step by step (see ``highway_bp_reference``):
    ``run(params, h0, xs, residual=None) -> hs``, a loss on every state."""
    _check_k(k)
    run = _jacobi_reference((step_fn,), k, stacked=False, rnn=True)

    def run_rnn(params: PyTree, h0: PyTree, xs: PyTree, residual: PyTree = None) -> PyTree:
        return run((params,), h0, xs, residual)

    return run_rnn
