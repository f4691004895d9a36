"""A small, complete training job for the training tests, in-process or as a subprocess.

An MLP with dropout regresses a fixed random target through ``training.fit``.
Usage: ``python regression_job.py WORKDIR OUT.npz [--steps N] [--sleep S]
[--param-sharding MODE ...]``. ``--sleep`` slows each batch down so a test can kill
the job mid-run; with several sharding modes the job is trained once per mode, into
``WORKDIR/MODE`` and ``OUT-MODE.npz``, with the share of each parameter one device
holds (``fraction``).
"""

import argparse
import functools
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import training

STEPS = 20
CHECKPOINT_EVERY = 5
EVAL_EVERY = 10


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x, rng=None):
        x = nn.gelu(nn.Dense(32)(x))
        x = nn.Dropout(0.1, deterministic=rng is None)(x, rng=rng)
        return nn.Dense(1)(x)[..., 0]


@functools.cache
def _build(steps, sleep):
    """Everything but the train state, built once per process for each setting so
    that repeated runs in one process reuse the compiled steps."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = np.sin(x @ rng.normal(size=4)).astype(np.float32)

    def slow(example):
        time.sleep(sleep)
        return example

    model = MLP()

    def loss_fn(params, batch, key):
        pred = model.apply(params, batch["x"], key)
        return jnp.mean((pred - batch["y"]) ** 2)

    optimizer = training.make_optimizer(
        training.OptimizerConfig(name="adamw", learning_rate=3e-3, schedule="cosine"), steps
    )
    params = jax.jit(model.init)(jax.random.key(1), x[:1])
    train_step, eval_step = training.make_train_step(loss_fn, optimizer)
    loader = training.make_loader(training.ArraySource(x=x, y=y), 16, seed=3, transform=slow)
    eval_loader = training.make_eval_loader(training.ArraySource(x=x[:40], y=y[:40]), 16)
    return params, optimizer, train_step, eval_step, loader, eval_loader


def run(
    workdir,
    *,
    steps=STEPS,
    sleep=0.0,
    checkpoint_every=CHECKPOINT_EVERY,
    param_sharding="replicated",
):
    """Train (or resume) the job in ``workdir``; returns the ``FitResult``."""
    params, optimizer, train_step, eval_step, loader, eval_loader = _build(steps, sleep)
    params = jax.tree.map(jnp.copy, params)  # fit donates the state's buffers
    state = training.TrainState.create(params, optimizer, rng=jax.random.key(2))
    return training.fit(
        state,
        train_step,
        loader,
        num_steps=steps,
        workdir=workdir,
        eval_step=eval_step,
        eval_data=eval_loader,
        eval_every=EVAL_EVERY,
        checkpoint_every=checkpoint_every,
        log_every=1,
        param_sharding=param_sharding,
        progress=False,
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--checkpoint-every", type=int, default=CHECKPOINT_EVERY)
    parser.add_argument("--param-sharding", nargs="+", default=None)
    args = parser.parse_args()
    for mode in args.param_sharding or ["replicated"]:
        workdir, out = args.workdir, args.out
        if args.param_sharding:
            workdir, out = f"{workdir}/{mode}", out.replace(".npz", f"-{mode}.npz")
        result = run(
            workdir,
            steps=args.steps,
            sleep=args.sleep,
            checkpoint_every=args.checkpoint_every,
            param_sharding=mode,
        )
        params = jax.tree.leaves(result.state.params)
        fraction = [x.addressable_shards[0].data.size / x.size for x in params]
        np.savez(out, *jax.device_get(params), devices=jax.device_count(), fraction=fraction)


if __name__ == "__main__":
    main()
