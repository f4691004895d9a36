"""A small, complete training job run as a subprocess by the training tests.

An MLP with dropout regresses a fixed random target through ``training.fit``.
Usage: ``python regression_job.py WORKDIR OUT.npz [--steps N] [--sleep S]``.
``--sleep`` slows each batch down so a test can kill the job mid-run.
"""

import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import training


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x, rng=None):
        x = nn.gelu(nn.Dense(32)(x))
        x = nn.Dropout(0.1, deterministic=rng is None)(x, rng=rng)
        return nn.Dense(1)(x)[..., 0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--checkpoint-every", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = np.sin(x @ rng.normal(size=4)).astype(np.float32)

    def slow(example):
        time.sleep(args.sleep)
        return example

    model = MLP()

    def loss_fn(params, batch, key):
        pred = model.apply(params, batch["x"], key)
        return jnp.mean((pred - batch["y"]) ** 2)

    optimizer = training.make_optimizer(
        training.OptimizerConfig(name="adamw", learning_rate=3e-3, schedule="cosine"), args.steps
    )
    params = model.init(jax.random.PRNGKey(1), x[:1])
    state = training.TrainState.create(params, optimizer, rng=2)
    train_step, eval_step = training.make_train_step(loss_fn, optimizer)
    loader = training.make_loader(training.ArraySource(x=x, y=y), 16, seed=3, transform=slow)
    eval_loader = training.make_loader(
        training.ArraySource(x=x[:40], y=y[:40]), 16, shuffle=False, num_epochs=1
    )
    result = training.fit(
        state,
        train_step,
        loader,
        num_steps=args.steps,
        workdir=args.workdir,
        eval_step=eval_step,
        eval_data=eval_loader,
        eval_every=10,
        checkpoint_every=args.checkpoint_every,
        log_every=1,
        progress=False,
    )
    leaves = jax.tree.leaves(jax.device_get(result.state.params))
    np.savez(args.out, *leaves, devices=jax.device_count())


if __name__ == "__main__":
    main()
