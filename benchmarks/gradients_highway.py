"""Highway-BP against exact backpropagation, side by side in one process.

1. Training: the same seed, batches and number of steps with exact BP and Highway-BP
   k in {0, 1, 2, 4}: a residual MLP (8 blocks, width 64) and a ResNet-style conv net
   (6 blocks, 16 channels) on scikit-learn's 8x8 digits (offline), Adam; final training
   loss (mean of the last 20 steps) and test accuracy.
2. Gradient fidelity: cosine similarity and relative error of the Highway-BP gradient
   (all parameters and the input, flattened) to the exact one, against the number of
   iterations ``k``, for residual MLP stacks of depth L in {8, 32} (width 64, hidden
   256, batch 64, squared-error loss to a random target): at the depth-scaled init of
   ``gradients.blocks`` (last projection / sqrt(L)), with unscaled branches (sqrt(L)
   larger: stronger coupling between blocks), and at the parameters of the digits MLP
   trained with exact BP in part 1 (its cross-entropy on 256 training images).
3. Step time: one jitted value-and-grad of the residual MLP stack (width 128, hidden 512,
   batch 64) for L in {4, 8, 16, 32, 64}: ``jax.grad`` of the plain ``lax.scan`` stack
   against Highway-BP k in {0, 1, 2, 4}; medians of repeats, and the critical path
   (sequential VJPs: L for exact BP, k + 1 batched ones for Highway-BP).

    python benchmarks/gradients_highway.py [--repeats 5] [--steps 400]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _machine import machine_line
from tqdm.auto import tqdm

from gradients import blocks, highway_bp
from training.datasets.images import load_digits


def plain_stack(block_fn):
    """The same residual stack differentiated by ordinary autodiff (the baseline)."""

    def stack(params, h0):
        return jax.lax.scan(lambda h, p: (h + block_fn(p, h), None), h0, params)[0]

    return stack


def stack_for(block_fn, k):
    return plain_stack(block_fn) if k is None else highway_bp(block_fn, k)


def label(k: int | None) -> str:
    return "exact" if k is None else f"k={k}"


def row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def flat(tree) -> jax.Array:
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def compare(grad, exact) -> tuple[float, float]:
    """(cosine similarity, relative error) of two gradients, all leaves together."""
    g, e = flat(grad), flat(exact)
    cos = float(g @ e / (jnp.linalg.norm(g) * jnp.linalg.norm(e)))
    return cos, float(jnp.linalg.norm(g - e) / jnp.linalg.norm(e))


KS = [0, 1, 2, 4, 8, 16, 32]


def fidelity_rows(setting, params, h0, loss_of):
    """Cosine and relative-error rows over ``KS`` for one MLP stack (``-`` past its depth)."""

    def grad_of(stack):
        return jax.jit(jax.grad(lambda p, h: loss_of(stack(p, h)), argnums=(0, 1)))

    depth = jax.tree.leaves(params)[0].shape[0]
    exact = grad_of(plain_stack(blocks.mlp_block))(params, h0)
    cosines, errors = [], []
    for k in KS:
        if k > depth:
            cosines.append("-")
            errors.append("-")
            continue
        cos, err = compare(grad_of(highway_bp(blocks.mlp_block, k))(params, h0), exact)
        cosines.append(f"{cos:.4f}")
        errors.append(f"{err:.2e}")
    return [row(setting, "cosine", *cosines), row(setting, "relative error", *errors)]


def fidelity_table(trained_params, trained_input, trained_loss) -> None:
    print("\n### 2. Gradient fidelity against exact backpropagation (residual MLP)\n")
    print(row("L, parameters", "metric", *[f"k={k}" for k in KS]))
    print(row(*["---"] * (2 + len(KS))))
    for depth in (8, 32):
        keys = jax.random.split(jax.random.key(depth), 3)
        params = blocks.init_mlp_blocks(keys[0], depth, 64, 256)
        h0 = jax.random.normal(keys[1], (64, 64))
        target = jax.random.normal(keys[2], (64, 64))
        unscaled = {**params, "w2": params["w2"] * np.sqrt(depth)}

        def squared_error(out, target=target):
            return 0.5 * jnp.mean(jnp.square(out - target))

        for name, p in [("depth-scaled init", params), ("unscaled branches", unscaled)]:
            print("\n".join(fidelity_rows(f"L={depth}, {name}", p, h0, squared_error)))
    rows = fidelity_rows("L=8, trained on digits", trained_params, trained_input, trained_loss)
    print("\n".join(rows), flush=True)


def digits_arrays():
    data = load_digits(8, seed=0)

    def arrays(source):
        items = [source[i] for i in range(len(source))]
        return np.stack([x["image"] for x in items]), np.array([x["label"] for x in items])

    return arrays(data.train), arrays(data.test)


def init_classifier(kind: str, key):
    """Stem, stacked residual blocks and head of the digits classifier."""
    k = jax.random.split(key, 3)
    if kind == "mlp":
        return {
            "stem": jax.random.normal(k[0], (64, 64)) / 8.0,
            "blocks": blocks.init_mlp_blocks(k[1], 8, 64, 256),
            "head": jax.random.normal(k[2], (64, 10)) / 8.0,
        }
    return {
        "stem": jax.random.normal(k[0], (3, 3, 1, 16)) / 3.0,
        "blocks": blocks.init_conv_blocks(k[1], 6, 16),
        "head": jax.random.normal(k[2], (16, 10)) / 4.0,
    }


def classifier(kind: str, k):
    """``logits(params, images [b, 8, 8, 1])`` with the residual stack run by ``k``."""
    block = blocks.mlp_block if kind == "mlp" else blocks.conv_block
    stack = stack_for(block, k)

    def logits(params, images):
        if kind == "mlp":
            h = images.reshape(len(images), -1) @ params["stem"]
            return blocks.layer_norm(stack(params["blocks"], h)) @ params["head"]
        h = jax.lax.conv_general_dilated(
            images, params["stem"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return stack(params["blocks"], h).mean(axis=(1, 2)) @ params["head"]

    return logits


def train(kind, k, data, steps, batch_size=128, seed=0):
    (x_train, y_train), (x_test, y_test) = data
    logits = classifier(kind, k)
    optimizer = optax.adam(optax.cosine_decay_schedule(3e-3, steps))
    params = init_classifier(kind, jax.random.key(seed))

    def loss_fn(params, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(logits(params, x), y).mean()

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    opt_state, losses = optimizer.init(params), []
    for _ in tqdm(range(steps), desc=f"{kind} {label(k)}", leave=False):
        batch = rng.choice(len(x_train), batch_size, replace=False)
        params, opt_state, loss = step(params, opt_state, x_train[batch], y_train[batch])
        losses.append(float(loss))
    accuracy = float(jnp.mean(jnp.argmax(jax.jit(logits)(params, x_test), -1) == y_test))
    return params, float(np.mean(losses[-20:])), accuracy


def training_table(steps: int):
    data = digits_arrays()
    methods = [None, 0, 1, 2, 4]
    print(f"\n### 1. Training on digits: {steps} Adam steps, batch 128, same seed and batches\n")
    print(row("model", "method", "final train loss", "test accuracy"))
    print(row(*["---"] * 4))
    trained = None
    for kind in ("mlp", "conv"):
        for k in methods:
            params, loss, accuracy = train(kind, k, data, steps)
            name = "residual MLP, 8 blocks" if kind == "mlp" else "ResNet-style conv, 6 blocks"
            print(row(name, label(k), f"{loss:.4f}", f"{accuracy:.3f}"), flush=True)
            if kind == "mlp" and k is None:
                trained = params
    # Fidelity at the trained MLP: the stack's input is the stem's output on a batch.
    (x_train, y_train), _ = data
    h0 = x_train[:256].reshape(256, -1) @ trained["stem"]

    def loss_of(out):
        logits = blocks.layer_norm(out) @ trained["head"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y_train[:256]).mean()

    return trained["blocks"], h0, loss_of


def timed(fn, *args, repeats):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timing_table(repeats: int) -> None:
    ks = [0, 1, 2, 4]
    print(
        "\n### 3. Step time (value and gradient, jitted), residual MLP width 128, hidden 512, "
        "batch 64\n"
    )
    print(
        row(
            "L", "forward ms", "exact BP ms", *[f"k={k} ms (x exact)" for k in ks],
            "critical path: exact / Highway k=0,1,2,4 (sequential VJPs)",
        )
    )  # fmt: skip
    print(row(*["---"] * (4 + len(ks))))
    for depth in (4, 8, 16, 32, 64):
        keys = jax.random.split(jax.random.key(depth), 2)
        params = blocks.init_mlp_blocks(keys[0], depth, 128, 512)
        h0 = jax.random.normal(keys[1], (64, 128))

        def grad_of(stack):
            return jax.jit(jax.value_and_grad(lambda p, h: jnp.mean(jnp.square(stack(p, h)))))

        forward = timed(jax.jit(plain_stack(blocks.mlp_block)), params, h0, repeats=repeats)
        exact = timed(grad_of(plain_stack(blocks.mlp_block)), params, h0, repeats=repeats)
        cells = []
        for k in ks:
            t = timed(grad_of(highway_bp(blocks.mlp_block, k)), params, h0, repeats=repeats)
            cells.append(f"{t * 1e3:.1f} ({t / exact:.2f})")
        path = " / ".join(str(min(k, depth) + 1) for k in ks)
        print(
            row(depth, f"{forward * 1e3:.1f}", f"{exact * 1e3:.1f}", *cells, f"{depth} / {path}"),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    print(machine_line())
    print("float32; the CPU is shared with other jobs, so times are noisy: compare ratios")
    trained = training_table(args.steps)
    fidelity_table(*trained)
    timing_table(args.repeats)


if __name__ == "__main__":
    main()
