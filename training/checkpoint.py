"""Atomic orbax checkpoints of the train state together with the data-iterator state."""

from __future__ import annotations

import os
from pathlib import Path

import grain
import jax
import orbax.checkpoint as ocp

from training.state import TrainState


class Checkpointer:
    """Keeps the last ``keep`` checkpoints of (train state, data iterator) under ``directory``.

    orbax writes each step to a temporary directory and renames it when
    complete, so a process killed mid-save leaves the previous checkpoints
    intact and the half-written one is ignored (and cleaned up) on restart.
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep,
                create=True,
                enable_async_checkpointing=False,
                cleanup_tmp_directories=True,
            ),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, state: TrainState, data_iterator: grain.DatasetIterator | None) -> None:
        items = {"state": ocp.args.StandardSave(state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        self.manager.save(int(state.step), args=ocp.args.Composite(**items), force=True)
        self.manager.wait_until_finished()

    def restore(
        self,
        template: TrainState,
        data_iterator: grain.DatasetIterator | None = None,
        step: int | None = None,
    ) -> TrainState:
        """The saved state shaped, typed and placed like ``template``.

        ``data_iterator``, if given, is moved in place to the saved position.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        items = {"state": ocp.args.StandardRestore(abstract)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        return self.manager.restore(step, args=ocp.args.Composite(**items))["state"]

    def close(self) -> None:
        self.manager.close()
