"""The classification job on the harness, its reload, and ``python -m mano_jax eval``."""

import json

import jax
import numpy as np
import pytest

from mano_jax.__main__ import main
from mano_jax.classify_job import ClassifyJobConfig
from training import harness


def test_classify_run_reloads_with_the_same_predictions(tmp_path, capsys):
    run = tmp_path / "run"
    config = ClassifyJobConfig(
        image_size=16, num_steps=6, batch_size=20, eval_every=3, checkpoint_every=3
    )
    _, experiment, result = harness.train(config, run, progress=False)
    # The parameters read back from the checkpoint predict exactly what the trained
    # parameters predicted.
    _, _, restored = harness.restore(ClassifyJobConfig, run)
    assert int(restored.step) == 6
    test = config.data().test
    images = np.stack([test[i]["image"] for i in range(8)])
    apply = jax.jit(experiment.model.apply)
    np.testing.assert_array_equal(
        apply(restored.params, images), apply(jax.device_get(result.state.params), images)
    )
    capsys.readouterr()
    assert main(["eval", "--run-dir", str(run)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    final = [r for r in result.history if r["split"] == "eval"][-1]
    assert evaluated["test_accuracy"] == pytest.approx(final["accuracy"], abs=1e-6)
    assert evaluated["step"] == 6
    # A Darcy evaluation of a classification run is refused with a message.
    with pytest.raises(SystemExit):
        main(["eval", "--run-dir", str(run), "--resolution", "64"])
    assert "--resolution only applies" in capsys.readouterr().err
