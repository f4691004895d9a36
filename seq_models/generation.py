"""Greedy, beam-search and sampled decoding under ``jax.jit``, generic over a cached step
function.

The step function contract::

    step_fn(params, tokens_t: int32 [N], cache) -> (logits: [N, V], cache)

feeds one token per sequence (the decoder input at the current position) and returns the
next-token logits and the updated cache. ``cache`` is any pytree whose array leaves have
the sequence axis ``N`` first, except scalar (0-d) leaves such as position counters, which
are shared by all sequences; its structure, shapes and dtypes must not change from step to
step. The search calls ``step_fn`` once per output position with the start tokens first,
so a decoder cache built for ``max_length`` positions suffices. ``step_fn`` is a static
argument of the compiled search: pass the same function object to reuse the compilation.

Beam search keeps ``num_beams`` sequences per example in one batch of ``N = B * num_beams``
rows (row ``b * num_beams + k``); the initial cache (batch ``B``) is repeated along its
leading axis, and after every step each array leaf is gathered along that axis with the
surviving beams' origins.

Length penalty (GNMT / T5): a finished hypothesis of ``n`` tokens (its EOS included) with
summed log-probability ``log p`` scores ``log p / ((5 + n) / 6) ** alpha``; ``alpha = 0``
ranks by log-probability alone.

Sampling: :func:`sample` (temperature, nucleus filtering by :func:`top_p_filter`) and
:func:`noisy_sample`, SCOPE's per-sequence mixture of a conditional and an unconditional
model, two caches advanced together.

``uncached_step_fn`` turns a full-sequence model into a step function that recomputes the
whole prefix at every step: the slow reference that cached decoding is tested against.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

PyTree = Any
StepFn = Callable[[PyTree, jax.Array, PyTree], tuple[jax.Array, PyTree]]


def _check_int(value: Any, name: str, *, minimum: int) -> int:
    is_int = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    if not is_int or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_start_tokens(start_tokens: Any) -> int:
    shape, dtype = jnp.shape(start_tokens), jnp.result_type(start_tokens)
    if len(shape) != 1 or shape[0] < 1 or not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(
            f"start_tokens must be a non-empty integer array [batch], got shape {shape} and "
            f"dtype {dtype}"
        )
    return shape[0]


def _check_cache(cache: PyTree, batch: int) -> None:
    sizes = sorted({jnp.shape(x)[0] for x in jax.tree.leaves(cache) if jnp.ndim(x)})
    if sizes and sizes != [batch]:
        raise ValueError(
            f"cache array leaves must have the batch ({batch}, that of start_tokens) as "
            f"their leading axis, got leading sizes {sizes}"
        )


def _check_logits(logits: jax.Array, rows: int) -> int:
    if jnp.ndim(logits) != 2 or jnp.shape(logits)[0] != rows:
        raise ValueError(f"step_fn must return logits [{rows}, vocab], got {jnp.shape(logits)}")
    return jnp.shape(logits)[1]


def _check_token_id(value: Any, name: str, *, optional: bool = False) -> int | None:
    if optional and value is None:
        return None
    return _check_int(value, name, minimum=0)


def length_penalty(length: jax.Array | int, alpha: jax.Array | float) -> jax.Array:
    """GNMT / T5 length normaliser ``((5 + length) / 6) ** alpha`` (float32)."""
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** jnp.asarray(alpha, jnp.float32)


def expand_to_beams(tree: PyTree, num_beams: int) -> PyTree:
    """Repeat every array leaf ``num_beams`` times along axis 0 (``[B, ...]`` ->
    ``[B * num_beams, ...]``, row ``b * num_beams + k``); scalar leaves are kept."""
    return jax.tree.map(lambda x: jnp.repeat(x, num_beams, axis=0) if jnp.ndim(x) else x, tree)


def gather_beams(tree: PyTree, indices: jax.Array) -> PyTree:
    """``x[indices]`` along axis 0 for every array leaf (``indices: int [N]``); scalar
    leaves are kept."""
    return jax.tree.map(lambda x: jnp.take(x, indices, axis=0) if jnp.ndim(x) else x, tree)


# ----------------------------------------------------------------------------- greedy


@functools.partial(jax.jit, static_argnames=("step_fn", "max_length", "eos_id", "pad_id"))
def _greedy(step_fn, params, cache, start_tokens, *, max_length, eos_id, pad_id):
    batch = start_tokens.shape[0]

    def body(state):
        i, last, tokens, finished, cache = state
        logits, cache = step_fn(params, last, cache)
        _check_logits(logits, batch)
        token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        token = jnp.where(finished, pad_id, token)
        tokens = tokens.at[:, i].set(token)
        if eos_id is not None:
            finished = finished | (token == eos_id)
        return i + 1, token, tokens, finished, cache

    def cond(state):
        i, _, _, finished, _ = state
        return (i < max_length) & ~jnp.all(finished)

    state = (
        jnp.array(0, jnp.int32),
        start_tokens.astype(jnp.int32),
        jnp.full((batch, max_length), pad_id, jnp.int32),
        jnp.zeros((batch,), bool),
        cache,
    )
    return lax.while_loop(cond, body, state)[2]


def greedy_search(
    step_fn: StepFn,
    params: PyTree,
    cache: PyTree,
    start_tokens: jax.Array,
    *,
    max_length: int,
    eos_id: int | None,
    pad_id: int = 0,
) -> jax.Array:
    """Greedy decoding: ``argmax`` of ``step_fn``'s logits at each of ``max_length`` steps.

    ``start_tokens: int [B]`` (the first decoder input, e.g. T5's pad/start id),
    ``cache``: the initial cache for batch ``B`` (see the module doc). A sequence that
    emits ``eos_id`` is finished: it is fed and emits ``pad_id`` from then on, and the loop
    stops once every sequence is finished (``eos_id=None``: always ``max_length`` steps).
    Returns the generated tokens ``int32 [B, max_length]`` (the start token excluded; EOS
    included, pad after it).
    """
    batch = _check_start_tokens(start_tokens)
    _check_cache(cache, batch)
    max_length = _check_int(max_length, "max_length", minimum=1)
    eos_id = _check_token_id(eos_id, "eos_id", optional=True)
    pad_id = _check_token_id(pad_id, "pad_id")
    return _greedy(
        step_fn,
        params,
        cache,
        jnp.asarray(start_tokens),
        max_length=max_length,
        eos_id=eos_id,
        pad_id=pad_id,
    )


# ----------------------------------------------------------------------------- beam search


@functools.partial(
    jax.jit, static_argnames=("step_fn", "max_length", "num_beams", "eos_id", "pad_id")
)
def _beam(step_fn, params, cache, start_tokens, alpha, *, max_length, num_beams, eos_id, pad_id):
    batch, beams = start_tokens.shape[0], num_beams
    rows = batch * beams
    neg_inf = jnp.array(-jnp.inf, jnp.float32)
    cache = expand_to_beams(cache, beams)
    max_penalty = length_penalty(max_length, alpha)
    batch_offsets = (jnp.arange(batch) * beams)[:, None]
    is_top = jnp.arange(2 * beams) < beams

    def body(state):
        i, last, alive_seqs, alive_logp, fin_seqs, fin_scores, cache, _ = state
        logits, cache = step_fn(params, last.reshape(rows), cache)
        vocab = _check_logits(logits, rows)
        if 2 * beams > beams * vocab:
            raise ValueError(f"num_beams needs a vocabulary of >= 2 tokens, got {vocab}")
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1).reshape(batch, beams, -1)
        candidates = (alive_logp[:, :, None] + logp).reshape(batch, beams * vocab)
        top_logp, top_index = lax.top_k(candidates, 2 * beams)
        origin, token = top_index // vocab, (top_index % vocab).astype(jnp.int32)
        seqs = jnp.take_along_axis(alive_seqs, origin[:, :, None], axis=1)
        seqs = seqs.at[:, :, i].set(token)
        is_eos = jnp.zeros_like(token, bool) if eos_id is None else token == eos_id

        # The best num_beams candidates that did not end stay alive (there are >= num_beams:
        # each beam contributes EOS at most once); the cache follows their origins.
        alive_logp, pick = lax.top_k(jnp.where(is_eos, neg_inf, top_logp), beams)
        alive_seqs = jnp.take_along_axis(seqs, pick[:, :, None], axis=1)
        last = jnp.take_along_axis(token, pick, axis=1)
        origin = jnp.take_along_axis(origin, pick, axis=1)
        cache = gather_beams(cache, (batch_offsets + origin).reshape(rows))

        # Finished: EOS candidates ranked among the top num_beams, and at the last step
        # the alive ones; the best num_beams by penalised score are kept.
        penalty = length_penalty(i + 1, alpha)
        eos_scores = jnp.where(is_eos & is_top, top_logp / penalty, neg_inf)
        end_scores = jnp.where(i == max_length - 1, alive_logp / penalty, neg_inf)
        pool_scores = jnp.concatenate([fin_scores, eos_scores, end_scores], axis=1)
        pool_seqs = jnp.concatenate([fin_seqs, seqs, alive_seqs], axis=1)
        fin_scores, keep = lax.top_k(pool_scores, beams)
        fin_seqs = jnp.take_along_axis(pool_seqs, keep[:, :, None], axis=1)

        # Done when no alive beam can still beat the worst kept hypothesis: future scores
        # are at most best_alive_logp / max(length_penalty) over the remaining lengths.
        bound = alive_logp[:, 0] / jnp.maximum(length_penalty(i + 2, alpha), max_penalty)
        worst = fin_scores[:, -1]
        done = (worst > neg_inf) & (worst >= bound)
        return i + 1, last, alive_seqs, alive_logp, fin_seqs, fin_scores, cache, done

    def cond(state):
        return (state[0] < max_length) & ~jnp.all(state[-1])

    first = jnp.concatenate([jnp.zeros((1,), jnp.float32), jnp.full((beams - 1,), -jnp.inf)])
    pad_seqs = jnp.full((batch, beams, max_length), pad_id, jnp.int32)
    state = (
        jnp.array(0, jnp.int32),
        jnp.repeat(start_tokens.astype(jnp.int32)[:, None], beams, axis=1),
        pad_seqs,
        jnp.tile(first, (batch, 1)),
        pad_seqs,
        jnp.full((batch, beams), -jnp.inf, jnp.float32),
        cache,
        jnp.zeros((batch,), bool),
    )
    state = lax.while_loop(cond, body, state)
    return state[4][:, 0], state[5][:, 0]


def beam_search(
    step_fn: StepFn,
    params: PyTree,
    cache: PyTree,
    start_tokens: jax.Array,
    *,
    max_length: int,
    num_beams: int,
    eos_id: int | None,
    pad_id: int = 0,
    alpha: float = 0.6,
) -> tuple[jax.Array, jax.Array]:
    """Beam search with ``num_beams`` beams per example and the GNMT length penalty.

    ``start_tokens: int [B]``; ``cache``: the initial cache for batch ``B`` (repeated per
    beam here). At step ``i`` the ``2 * num_beams`` best one-token extensions of the alive
    beams (by summed log-probability) are ranked; those ending in ``eos_id`` and ranked
    among the first ``num_beams`` become finished hypotheses scored
    ``log p / length_penalty(i + 1, alpha)``, the best ``num_beams`` others stay alive (the
    cache is gathered with them). At the last step the alive beams are finished too. The
    ``num_beams`` best finished hypotheses are kept; the search stops early once no alive
    beam can beat the worst of them (which does not change the result). With ``alpha = 0``
    and ``num_beams = 1`` this is greedy decoding.

    Returns ``(tokens int32 [B, max_length], scores float32 [B])``: the best finished
    hypothesis (EOS included, ``pad_id`` after it) and its penalised score.
    """
    batch = _check_start_tokens(start_tokens)
    _check_cache(cache, batch)
    max_length = _check_int(max_length, "max_length", minimum=1)
    num_beams = _check_int(num_beams, "num_beams", minimum=1)
    eos_id = _check_token_id(eos_id, "eos_id", optional=True)
    pad_id = _check_token_id(pad_id, "pad_id")
    real = isinstance(alpha, int | float | np.integer | np.floating) and not isinstance(
        alpha, bool | np.bool_
    )
    if not (real and np.isfinite(alpha)):
        raise ValueError(f"alpha must be a finite number, got {alpha!r}")
    return _beam(
        step_fn,
        params,
        cache,
        jnp.asarray(start_tokens),
        jnp.asarray(alpha, jnp.float32),
        max_length=max_length,
        num_beams=num_beams,
        eos_id=eos_id,
        pad_id=pad_id,
    )


# ----------------------------------------------------------------------------- reference


def init_uncached_cache(
    batch_size: int, max_length: int, context: PyTree = None, pad_id: int = 0
) -> dict:
    """The cache of ``uncached_step_fn``: the decoder inputs so far
    ``prefix: int32 [batch_size, max_length]``, the next position ``index`` (scalar) and
    ``context``, a pytree with batch-leading leaves handed to ``logits_fn`` (e.g. the
    encoder outputs and mask; it is repeated and gathered with the beams like any cache)."""
    batch_size = _check_int(batch_size, "batch_size", minimum=1)
    max_length = _check_int(max_length, "max_length", minimum=1)
    pad_id = _check_int(pad_id, "pad_id", minimum=0)
    _check_cache(context, batch_size)
    return {
        "prefix": jnp.full((batch_size, max_length), pad_id, jnp.int32),
        "index": jnp.array(0, jnp.int32),
        "context": context,
    }


def uncached_step_fn(logits_fn: Callable[[PyTree, jax.Array, PyTree], jax.Array]) -> StepFn:
    """A step function that recomputes the whole prefix at every step (no key/value cache).

    ``logits_fn(params, tokens int32 [N, T], context) -> logits [N, T, V]`` must be causal
    (position ``t`` depends on ``tokens[:, :t + 1]`` only); the step writes ``tokens_t`` at
    ``cache['index']`` of ``cache['prefix']`` (see ``init_uncached_cache``) and returns the
    logits at that position. O(T) decoder work per step: a reference, not a fast path.
    """

    def step(params: PyTree, tokens_t: jax.Array, cache: dict) -> tuple[jax.Array, dict]:
        index = cache["index"]
        prefix = cache["prefix"].at[:, index].set(tokens_t.astype(jnp.int32))
        logits = jnp.take(logits_fn(params, prefix, cache["context"]), index, axis=1)
        return logits, {"prefix": prefix, "index": index + 1, "context": cache["context"]}

    return step


# ----------------------------------------------------------------------------- sampling


def top_p_filter(logits: jax.Array, top_p: float | jax.Array) -> jax.Array:
    """Nucleus filtering: ``logits [N, V]`` with ``-inf`` outside the smallest set of
    most probable tokens whose probability reaches ``top_p`` (the most probable token is
    always kept; tokens tied with the last kept one are kept too). ``top_p >= 1`` keeps
    every token (no filtering, whatever the float32 rounding of tiny probabilities).
    Float32."""
    logits = jnp.asarray(logits, jnp.float32)
    ordered = -jnp.sort(-logits, axis=-1)
    probs = jax.nn.softmax(ordered, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # mass of the strictly more probable tokens
    kept = jnp.maximum(jnp.sum(before < top_p, axis=-1), 1)
    threshold = jnp.take_along_axis(ordered, (kept - 1)[:, None], axis=-1)
    return jnp.where((logits >= threshold) | (top_p >= 1), logits, -jnp.inf)


@functools.partial(
    jax.jit,
    static_argnames=(
        "cond_step",
        "uncond_step",
        "max_length",
        "conditional_steps",
        "eos_id",
        "pad_id",
    ),
)
def _sample(
    cond_step,
    uncond_step,
    params,
    caches,
    start_tokens,
    key,
    alpha,
    temperature,
    top_p,
    *,
    max_length,
    conditional_steps,
    eos_id,
    pad_id,
):
    batch = start_tokens.shape[0]

    def body(state):
        i, last, tokens, from_uncond, finished, caches = state
        token_key, coin_key = jax.random.split(jax.random.fold_in(key, i))
        logits, cond_cache = cond_step(params[0], last, caches[0])
        _check_logits(logits, batch)
        logits = logits.astype(jnp.float32)
        use_uncond = jnp.zeros((batch,), bool)
        new_caches = (cond_cache,)
        if uncond_step is not None:
            lm_logits, uncond_cache = uncond_step(params[1], last, caches[1])
            _check_logits(lm_logits, batch)
            # Tokens the conditional model rules out (-inf) stay out; the sampling
            # settings then apply to whichever model was chosen.
            lm_logits = jnp.where(jnp.isneginf(logits), -jnp.inf, lm_logits.astype(jnp.float32))
            coin = jax.random.bernoulli(coin_key, alpha, (batch,))
            use_uncond = coin & (i >= conditional_steps) & ~finished
            logits = jnp.where(use_uncond[:, None], lm_logits, logits)
            new_caches = (cond_cache, uncond_cache)
        logits = top_p_filter(logits / temperature, top_p)
        token = jax.random.categorical(token_key, logits, axis=-1).astype(jnp.int32)
        token = jnp.where(finished, pad_id, token)
        tokens = tokens.at[:, i].set(token)
        from_uncond = from_uncond.at[:, i].set(use_uncond)
        if eos_id is not None:
            finished = finished | (token == eos_id)
        return i + 1, token, tokens, from_uncond, finished, new_caches

    def cond(state):
        i, *_, finished, _ = state
        return (i < max_length) & ~jnp.all(finished)

    state = (
        jnp.array(0, jnp.int32),
        start_tokens.astype(jnp.int32),
        jnp.full((batch, max_length), pad_id, jnp.int32),
        jnp.zeros((batch, max_length), bool),
        jnp.zeros((batch,), bool),
        caches,
    )
    _, _, tokens, from_uncond, _, _ = lax.while_loop(cond, body, state)
    return tokens, from_uncond


def _check_sampling(temperature: Any, top_p: Any) -> None:
    if not (isinstance(temperature, int | float) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    if not (isinstance(top_p, int | float) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be a number in (0, 1], got {top_p!r}")


def sample(
    step_fn: StepFn,
    params: PyTree,
    cache: PyTree,
    start_tokens: jax.Array,
    key: jax.Array,
    *,
    max_length: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    eos_id: int | None,
    pad_id: int = 0,
) -> jax.Array:
    """Ancestral sampling with temperature and nucleus (top-p) filtering.

    At step ``i`` the token is drawn from ``softmax(top_p_filter(logits / temperature))``
    with the key ``split(fold_in(key, i))[0]``. EOS, padding, the start tokens and the
    cache as in :func:`greedy_search`. Returns ``int32 [B, max_length]``.
    """
    tokens, _ = noisy_sample(
        step_fn,
        params,
        cache,
        None,
        None,
        None,
        start_tokens,
        key,
        alpha=0.0,
        max_length=max_length,
        temperature=temperature,
        top_p=top_p,
        eos_id=eos_id,
        pad_id=pad_id,
    )
    return tokens


def noisy_sample(
    cond_step_fn: StepFn,
    cond_params: PyTree,
    cond_cache: PyTree,
    uncond_step_fn: StepFn | None,
    uncond_params: PyTree,
    uncond_cache: PyTree,
    start_tokens: jax.Array,
    key: jax.Array,
    *,
    alpha: float,
    max_length: int,
    temperature: float = 0.6,
    top_p: float = 0.9,
    conditional_steps: int = 2,
    eos_id: int | None,
    pad_id: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """SCOPE's noisy decoding: a mixture of a conditional and an unconditional model.

    At every step ``i >= conditional_steps``, independently for each sequence, a coin
    with probability ``alpha`` (key ``split(fold_in(key, i))[1]``) picks the
    unconditional model (``uncond_step_fn``, e.g. the pretrained LM without the context)
    for the next token, otherwise the conditional one (the fine-tuned model). Both models
    read the same tokens and keep their own caches. The unconditional logits are set to
    ``-inf`` wherever the conditional model's raw logits are (tokens it rules out
    altogether); the chosen model's logits are then scaled by ``1 / temperature`` and
    nucleus-filtered, as in :func:`sample`. (Masking with the conditional model's
    nucleus instead would let the unconditional model pick only tokens the fine-tuned
    model already favours, so a confident model would yield few unfaithful samples.)
    The token is drawn with the key ``split(fold_in(key, i))[0]``, so that ``alpha = 0``
    gives exactly :func:`sample` with the same key.

    Args:
      cond_step_fn, cond_params, cond_cache: the conditional model (step-function
        contract of this module).
      uncond_step_fn, uncond_params, uncond_cache: the unconditional model, or
        ``None, None, None`` for plain sampling.
      start_tokens: ``int [B]``; key: a PRNG key.
      alpha: probability of an unconditional step, in ``[0, 1]``.
      max_length, eos_id, pad_id: as :func:`greedy_search`.
      temperature, top_p: sampling settings (SCOPE: 0.6 and 0.9).
      conditional_steps: the first steps always taken from the conditional model.

    Returns:
      ``(tokens int32 [B, max_length], from_uncond bool [B, max_length])``: the sample and
      the steps whose token came from the unconditional model.
    """
    batch = _check_start_tokens(start_tokens)
    _check_cache(cond_cache, batch)
    if uncond_step_fn is not None:
        _check_cache(uncond_cache, batch)
    if not (isinstance(alpha, int | float) and 0 <= alpha <= 1):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    _check_sampling(temperature, top_p)
    return _sample(
        cond_step_fn,
        uncond_step_fn,
        (cond_params, uncond_params),
        (cond_cache,) if uncond_step_fn is None else (cond_cache, uncond_cache),
        jnp.asarray(start_tokens),
        key,
        jnp.float32(alpha),
        jnp.float32(temperature),
        jnp.float32(top_p),
        max_length=_check_int(max_length, "max_length", minimum=1),
        conditional_steps=_check_int(conditional_steps, "conditional_steps", minimum=0),
        eos_id=_check_token_id(eos_id, "eos_id", optional=True),
        pad_id=_check_token_id(pad_id, "pad_id"),
    )
