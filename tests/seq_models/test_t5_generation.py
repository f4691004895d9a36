"""T5 blocks, the T5 decoder's key/value cache, and greedy / beam-search generation.

A tiny random-weight decoder (embedding table + ``T5Decoder`` + linear head) over a random
"encoder output" whose second example is padded. References: numpy formulas, a
recompute-the-prefix step function, and plain-Python greedy and beam search driven by the
full (uncached) decoder.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seq_models.generation import (
    beam_search,
    greedy_search,
    init_uncached_cache,
    length_penalty,
    uncached_step_fn,
)
from seq_models.t5 import (
    Attention,
    GatedGeluFeedForward,
    RelativePositionBias,
    RMSNorm,
    T5Decoder,
    T5Encoder,
    init_decoder_cache,
    relative_position_bucket,
)

VOCAB, D_MODEL, HEADS, HEAD_DIM, D_FF, LAYERS = 11, 16, 2, 8, 32, 2
BATCH, SOURCE, MAX_LEN, BEAMS, PAD = 2, 9, 7, 3, 0
SIZES = dict(num_layers=LAYERS, d_model=D_MODEL, num_heads=HEADS, head_dim=HEAD_DIM, d_ff=D_FF)
DECODER = T5Decoder(**SIZES)


def _relative_error(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _full_logits(params, tokens, context, decoder=DECODER):
    """Teacher-forced logits ``[N, T, V]`` of the whole decoder (no cache)."""
    encoded, encoder_mask = context
    x = params["embed"][tokens]
    h = decoder.apply({"params": params["decoder"]}, x, encoded, encoder_mask)
    return h.astype(jnp.float32) @ params["head"] + params["head_bias"]


def _cached_step(params, tokens_t, cache):
    x = params["embed"][tokens_t][:, None]
    h, variables = DECODER.apply(
        {"params": params["decoder"], "cache": cache}, x, decode=True, mutable=["cache"]
    )
    logits = h[:, 0].astype(jnp.float32) @ params["head"] + params["head_bias"]
    return logits, variables["cache"]


def _random_params(module, *args, seed=7):
    """Parameters of ``module`` from their traced shapes, drawn with numpy at T5's scales:
    kernels ``N(0, 1 / fan_in)`` (query ``1 / (fan_in * head_dim)``), norm scales
    ``1 + N(0, 0.1^2)``, position-bias tables ``N(0, 0.5^2)``."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), *args)["params"]
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name, shape = jax.tree_util.keystr(path), leaf.shape
        noise = rng.standard_normal(shape)
        if name.endswith("['scale']"):
            value = 1.0 + 0.1 * noise
        elif name.endswith("['embedding']"):
            value = 0.5 * noise
        elif "['out']" in name:
            value = noise / math.sqrt(math.prod(shape[:-1]))
        elif "['query']" in name:
            value = noise / math.sqrt(shape[0] * shape[-1])
        else:
            value = noise / math.sqrt(shape[0])
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


UNCACHED_STEP = uncached_step_fn(_full_logits)
FULL = jax.jit(_full_logits)
INIT_CACHE = jax.jit(lambda p, e, m: init_decoder_cache(DECODER, p, e, m, MAX_LEN))


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(8)
    encoded = rng.standard_normal((BATCH, SOURCE, D_MODEL)).astype(np.float32)
    encoder_mask = np.arange(SOURCE)[None, :] < np.array([[SOURCE], [SOURCE - 4]])
    targets = np.zeros((BATCH, MAX_LEN, D_MODEL), np.float32)
    params = {
        "embed": jnp.asarray(rng.standard_normal((VOCAB, D_MODEL)), jnp.float32),
        "decoder": _random_params(DECODER, targets, encoded, encoder_mask, seed=15),
        "head": jnp.asarray(3.0 * rng.standard_normal((D_MODEL, VOCAB)) / math.sqrt(D_MODEL)),
        # Like a trained model, never predict the pad (start) token.
        "head_bias": jnp.zeros(VOCAB).at[PAD].set(-30.0),
    }
    context = (encoded, encoder_mask)
    start = np.full((BATCH,), PAD, np.int32)
    free_run = _python_greedy(params, context, eos_id=None)
    # An end-of-sequence id the model actually emits: example 0's fourth token.
    eos_id = int(free_run[0, 3])
    return dict(params=params, context=context, start=start, free_run=free_run, eos_id=eos_id)


@pytest.fixture(scope="module")
def greedy_cached(setup):
    cache = INIT_CACHE(setup["params"]["decoder"], *setup["context"])
    return greedy_search(
        _cached_step,
        setup["params"],
        cache,
        setup["start"],
        max_length=MAX_LEN,
        eos_id=setup["eos_id"],
        pad_id=PAD,
    )


@pytest.fixture(scope="module")
def beams_cached(setup):
    cache = INIT_CACHE(setup["params"]["decoder"], *setup["context"])
    return beam_search(
        _cached_step,
        setup["params"],
        cache,
        setup["start"],
        max_length=MAX_LEN,
        num_beams=BEAMS,
        eos_id=setup["eos_id"],
        pad_id=PAD,
        alpha=0.6,
    )


def _inputs(generated) -> np.ndarray:
    """Decoder inputs ``[n, MAX_LEN]``: the start token then the generated tokens."""
    rows = np.full((len(generated), MAX_LEN), PAD, np.int32)
    for r, seq in enumerate(generated):
        rows[r, 1 : 1 + min(len(seq), MAX_LEN - 1)] = seq[: MAX_LEN - 1]
    return rows


def _python_greedy(params, context, eos_id):
    generated = [[] for _ in range(BATCH)]
    finished = [False] * BATCH
    for i in range(MAX_LEN):
        logits = np.asarray(FULL(params, _inputs(generated), context))[:, i]
        for b in range(BATCH):
            token = PAD if finished[b] else int(np.argmax(logits[b]))
            generated[b].append(token)
            finished[b] = finished[b] or token == eos_id
    return np.array(generated, np.int32)


def _log_softmax(logits) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), -1, keepdims=True))


def _penalty(length: int, alpha: float) -> float:
    return ((5.0 + length) / 6.0) ** alpha


def _python_beam(params, context, eos_id, alpha):
    """Beam search over the full decoder, one example at a time (rows padded to BEAMS)."""
    best = []
    for b in range(BATCH):
        ctx = tuple(np.repeat(x[b : b + 1], BEAMS, axis=0) for x in context)
        alive, finished = [((), 0.0)], []
        for i in range(MAX_LEN):
            rows = _inputs([seq for seq, _ in alive] + [()] * (BEAMS - len(alive)))
            logp = _log_softmax(FULL(params, rows, ctx))[:, i]
            candidates = sorted(
                (-(score + logp[j, v]), j * VOCAB + v, j, v)
                for j, (_, score) in enumerate(alive)
                for v in range(VOCAB)
            )[: 2 * BEAMS]
            next_alive = []
            for rank, (neg, _, j, v) in enumerate(candidates):
                seq = alive[j][0] + (v,)
                if v == eos_id:
                    if rank < BEAMS:
                        finished.append((-neg / _penalty(i + 1, alpha), seq))
                elif len(next_alive) < BEAMS:
                    next_alive.append((seq, -neg))
            if i == MAX_LEN - 1:
                finished += [(s / _penalty(MAX_LEN, alpha), seq) for seq, s in next_alive]
            finished = sorted(finished, key=lambda f: -f[0])[:BEAMS]
            alive = next_alive
        score, seq = finished[0]
        best.append((list(seq) + [PAD] * (MAX_LEN - len(seq)), score))
    return np.array([s for s, _ in best], np.int32), np.array([sc for _, sc in best])


def _sequence_score(params, context, tokens, eos_id, alpha) -> np.ndarray:
    """Penalised log-probability of generated ``tokens [B, MAX_LEN]`` (up to the EOS)."""
    inputs = np.concatenate([np.full((BATCH, 1), PAD), np.asarray(tokens)[:, :-1]], axis=1)
    logp = _log_softmax(FULL(params, inputs, context))
    scores = []
    for b in range(BATCH):
        seq = list(np.asarray(tokens[b]))
        length = seq.index(eos_id) + 1 if eos_id in seq else MAX_LEN
        total = sum(logp[b, t, seq[t]] for t in range(length))
        scores.append(total / _penalty(length, alpha))
    return np.array(scores)


# ----------------------------------------------------------------------------- blocks


def _numpy_bucket(relative, bidirectional, num_buckets, max_distance):
    """T5's ``_relative_position_bucket`` (Mesh TensorFlow), float32 as there."""
    ret = np.zeros_like(relative)
    n = -relative
    if bidirectional:
        num_buckets //= 2
        ret += (n < 0).astype(np.int32) * num_buckets
        n = np.abs(n)
    else:
        n = np.maximum(n, 0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    with np.errstate(divide="ignore", invalid="ignore"):
        val_if_large = max_exact + (
            np.log(n.astype(np.float32) / max_exact)
            / math.log(max_distance / max_exact)
            * (num_buckets - max_exact)
        ).astype(np.int32)
    val_if_large = np.minimum(val_if_large, num_buckets - 1)
    return ret + np.where(is_small, n, val_if_large)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize(("num_buckets", "max_distance"), [(32, 128), (8, 20)])
def test_relative_position_buckets_match_t5_formula(bidirectional, num_buckets, max_distance):
    relative = np.arange(-600, 601, dtype=np.int32)
    got = relative_position_bucket(
        relative, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance
    )
    expected = _numpy_bucket(relative, bidirectional, num_buckets, max_distance)
    np.testing.assert_array_equal(np.asarray(got), expected)
    assert got.min() >= 0 and got.max() == num_buckets - 1


def test_blocks_match_numpy_formulas():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, D_MODEL)).astype(np.float32)
    x_np = np.asarray(x, np.float64)

    norm = RMSNorm()
    scale = np.linspace(0.5, 1.5, D_MODEL)
    y = jax.jit(norm.apply)({"params": {"scale": jnp.asarray(scale, jnp.float32)}}, x)
    expected = x_np / np.sqrt(np.mean(x_np**2, -1, keepdims=True) + 1e-6) * scale
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-6)
    y16 = jax.jit(norm.apply)({"params": {"scale": jnp.ones(D_MODEL)}}, x.astype(jnp.bfloat16))
    assert y16.dtype == jnp.bfloat16

    ff = GatedGeluFeedForward(D_MODEL, D_FF)
    p = _random_params(ff, x)
    w0, w1, wo = (np.asarray(p[n]["kernel"], np.float64) for n in ("wi_0", "wi_1", "wo"))
    a = x_np @ w0
    gelu = 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a**3)))
    np.testing.assert_allclose(
        np.asarray(jax.jit(ff.apply)({"params": p}, x)),
        (gelu * (x_np @ w1)) @ wo,
        rtol=1e-4,
        atol=1e-5,
    )
    assert "bias" not in p["wi_0"] and "bias" not in p["wo"]

    attention = Attention(HEADS, HEAD_DIM)
    mask = np.tril(np.ones((5, 5), bool))[None, None]
    bias = rng.standard_normal((1, HEADS, 5, 5)).astype(np.float32)
    p = _random_params(attention, x)
    q, k, v = (
        np.einsum("btd,dhe->bthe", x_np, np.asarray(p[n]["kernel"], np.float64))
        for n in ("query", "key", "value")
    )
    logits = np.einsum("bqhe,bkhe->bhqk", q, k) + np.asarray(bias)  # no 1/sqrt(head_dim)
    logits = np.where(mask, logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    expected = np.einsum(
        "bqhe,hed->bqd", np.einsum("bhqk,bkhe->bqhe", weights, v), np.asarray(p["out"]["kernel"])
    )
    got = jax.jit(attention.apply)({"params": p}, x, mask=jnp.asarray(mask), bias=bias)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-5)

    rpb = RelativePositionBias(HEADS, bidirectional=True)
    p = _random_params(rpb, jnp.arange(3), jnp.arange(4))
    table = np.asarray(p["embedding"])
    got = np.asarray(rpb.apply({"params": p}, jnp.arange(3), jnp.arange(4)))
    buckets = _numpy_bucket(np.arange(4)[None] - np.arange(3)[:, None], True, 32, 128)
    np.testing.assert_allclose(got, table[buckets].transpose(2, 0, 1)[None])


# ----------------------------------------------------------------------------- decoder


def test_decoder_padding_and_causality(setup):
    params, (encoded, encoder_mask) = setup["params"], setup["context"]
    rng = np.random.default_rng(2)
    tokens = rng.integers(0, VOCAB, (BATCH, MAX_LEN))
    base = np.asarray(FULL(params, tokens, (encoded, encoder_mask)))
    noise = 100.0 * rng.standard_normal(encoded.shape).astype(np.float32)
    changed = np.where(encoder_mask[..., None], encoded, noise)
    assert not np.allclose(changed, encoded)
    np.testing.assert_allclose(
        np.asarray(FULL(params, tokens, (changed, encoder_mask))), base, rtol=1e-6, atol=1e-6
    )
    t0 = 3
    later = tokens.copy()
    later[:, t0 + 1 :] = (later[:, t0 + 1 :] + 1) % VOCAB
    out = np.asarray(FULL(params, later, (encoded, encoder_mask)))
    np.testing.assert_allclose(out[:, : t0 + 1], base[:, : t0 + 1], rtol=1e-6, atol=1e-6)
    assert not np.allclose(out[:, t0 + 1 :], base[:, t0 + 1 :])


def test_decoder_and_encoder_bf16_close_to_float32(setup):
    params, context = setup["params"], setup["context"]
    encoded, encoder_mask = context
    inputs = _inputs(setup["free_run"])
    decoder16 = T5Decoder(**SIZES, dtype=jnp.bfloat16)
    logits16 = jax.jit(lambda p, t, c: _full_logits(p, t, c, decoder16))(params, inputs, context)
    assert bool(jnp.all(jnp.isfinite(logits16)))
    assert _relative_error(logits16, FULL(params, inputs, context)) < 3e-2
    x = np.asarray(params["embed"])[inputs]
    hidden = jax.eval_shape(decoder16.apply, {"params": params["decoder"]}, x, encoded)
    assert hidden.dtype == jnp.bfloat16

    encoder = T5Encoder(**SIZES)
    enc_params = _random_params(encoder, encoded, encoder_mask)
    assert jax.tree.all(jax.tree.map(lambda p: p.dtype == jnp.float32, enc_params))
    # Encoder padding: padded inputs do not reach real positions, outputs there are zero.
    changed = np.where(encoder_mask[..., None], encoded, -encoded * 50.0)
    both = jax.jit(encoder.apply)(
        {"params": enc_params},
        np.concatenate([encoded, changed]),
        np.concatenate([encoder_mask, encoder_mask]),
    )
    enc32, again = both[:BATCH], both[BATCH:]
    np.testing.assert_allclose(np.asarray(again), np.asarray(enc32), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(enc32)[~np.asarray(encoder_mask)], 0.0)
    enc16 = jax.jit(T5Encoder(**SIZES, dtype=jnp.bfloat16).apply)(
        {"params": enc_params}, encoded, encoder_mask
    )
    assert enc16.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(enc16)))
    assert _relative_error(enc16, enc32) < 3e-2


# ----------------------------------------------------------------------------- generation


def test_cached_greedy_equals_uncached_and_python(setup, greedy_cached):
    eos_id = setup["eos_id"]
    cache = init_uncached_cache(BATCH, MAX_LEN, setup["context"], pad_id=PAD)
    uncached = greedy_search(
        UNCACHED_STEP,
        setup["params"],
        cache,
        setup["start"],
        max_length=MAX_LEN,
        eos_id=eos_id,
        pad_id=PAD,
    )
    python = _python_greedy(setup["params"], setup["context"], eos_id)
    np.testing.assert_array_equal(np.asarray(greedy_cached), np.asarray(uncached))
    np.testing.assert_array_equal(np.asarray(greedy_cached), python)


def test_greedy_eos_then_only_pad(setup, greedy_cached):
    tokens, free_run, eos_id = np.asarray(greedy_cached), setup["free_run"], setup["eos_id"]
    ended = 0
    for row, free in zip(tokens, free_run, strict=True):
        hits = np.flatnonzero(free == eos_id)
        stop = hits[0] + 1 if len(hits) else MAX_LEN
        np.testing.assert_array_equal(row[:stop], free[:stop])
        np.testing.assert_array_equal(row[stop:], PAD)
        ended += stop < MAX_LEN
    assert ended >= 1


def test_beam_search_one_beam_is_greedy(setup, greedy_cached):
    cache = INIT_CACHE(setup["params"]["decoder"], *setup["context"])
    tokens, scores = beam_search(
        _cached_step,
        setup["params"],
        cache,
        setup["start"],
        max_length=MAX_LEN,
        num_beams=1,
        eos_id=setup["eos_id"],
        pad_id=PAD,
        alpha=0.0,
    )
    np.testing.assert_array_equal(np.asarray(tokens), np.asarray(greedy_cached))
    expected = _sequence_score(setup["params"], setup["context"], tokens, setup["eos_id"], 0.0)
    np.testing.assert_allclose(np.asarray(scores), expected, rtol=1e-5)


def test_beam_search_scores_at_least_greedy(setup, greedy_cached, beams_cached):
    tokens, scores = beams_cached
    eos_id = setup["eos_id"]
    rescored = _sequence_score(setup["params"], setup["context"], tokens, eos_id, 0.6)
    np.testing.assert_allclose(np.asarray(scores), rescored, rtol=1e-5)
    greedy = _sequence_score(setup["params"], setup["context"], greedy_cached, eos_id, 0.6)
    assert np.all(rescored >= greedy - 1e-6)
    for row in np.asarray(tokens):
        hits = np.flatnonzero(row == eos_id)
        if len(hits):
            np.testing.assert_array_equal(row[hits[0] + 1 :], PAD)


def test_cached_beam_search_equals_uncached_reference(setup, beams_cached):
    """Against a plain-Python beam search that recomputes the full decoder every step."""
    tokens, scores = _python_beam(setup["params"], setup["context"], setup["eos_id"], 0.6)
    np.testing.assert_array_equal(np.asarray(beams_cached[0]), tokens)
    np.testing.assert_allclose(np.asarray(beams_cached[1]), scores, rtol=1e-5)


def test_length_penalty_is_gnmt():
    np.testing.assert_allclose(float(length_penalty(7, 0.6)), 2.0**0.6, rtol=1e-6)
    assert float(length_penalty(3, 0.0)) == 1.0


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: T5Decoder(**{**SIZES, "num_layers": 0}), "num_layers"),
        (lambda: T5Decoder(**{**SIZES, "d_model": 2.5}), "d_model"),
        (lambda: T5Decoder(**SIZES, dropout=1.0), "dropout"),
        (lambda: T5Decoder(**SIZES, dtype=jnp.int32), "dtype"),
        (lambda: T5Decoder(**SIZES, max_distance=8), "max_distance"),
        (lambda: T5Encoder(**{**SIZES, "num_heads": -1}), "num_heads"),
        (lambda: T5Encoder(**{**SIZES, "d_ff": 0}), "d_ff"),
        (lambda: Attention(HEADS, 0), "head_dim"),
        (lambda: GatedGeluFeedForward(D_MODEL, 0), "d_ff"),
        (lambda: RelativePositionBias(HEADS, True, num_buckets=3), "num_buckets"),
        (lambda: RMSNorm(epsilon=0.0), "epsilon"),
    ],
)
def test_constructor_errors_name_the_field(build, field):
    with pytest.raises(ValueError, match=field):
        build()


def test_call_errors(setup):
    params, (encoded, encoder_mask) = setup["params"], setup["context"]
    cache = init_uncached_cache(BATCH, MAX_LEN, setup["context"])
    start = setup["start"]
    common = dict(eos_id=setup["eos_id"])
    with pytest.raises(ValueError, match="max_length"):
        greedy_search(UNCACHED_STEP, params, cache, start, max_length=0, **common)
    with pytest.raises(ValueError, match="num_beams"):
        beam_search(UNCACHED_STEP, params, cache, start, max_length=3, num_beams=0, **common)
    with pytest.raises(ValueError, match="alpha"):
        beam_search(
            UNCACHED_STEP, params, cache, start, max_length=3, num_beams=2, alpha=np.nan, **common
        )
    with pytest.raises(ValueError, match="start_tokens"):
        greedy_search(UNCACHED_STEP, params, cache, start[:, None], max_length=3, **common)
    with pytest.raises(ValueError, match="cache"):
        greedy_search(UNCACHED_STEP, params, cache, start[:1], max_length=3, **common)
    with pytest.raises(ValueError, match="eos_id"):
        greedy_search(UNCACHED_STEP, params, cache, start, max_length=3, eos_id=-1)
    with pytest.raises(ValueError, match="targets"):
        DECODER.apply({"params": params["decoder"]}, encoded[..., :4], encoded, encoder_mask)
    with pytest.raises(ValueError, match="encoder_mask"):
        DECODER.apply({"params": params["decoder"]}, encoded, encoded, encoder_mask[:, :3])
    with pytest.raises(ValueError, match="num_buckets"):
        relative_position_bucket(np.arange(3), bidirectional=True, num_buckets=2)
