"""Entity-tracking data, the statement decoder and ``python -m seq_models chacal-train``."""

import json

import jax
import jax.numpy as jnp
import multiprocess
import numpy as np
import pytest

from seq_models.__main__ import main
from seq_models.chacal_job import ChaCALConfig, StatementDecoder
from seq_models.entity_tracking import MOVE, PUT, QUERY, REMOVE, BoxesSource, TrackingSource

TINY = [
    "--steps", "40", "--batch-size", "16", "--length", "12", "--max-changes", "4",
    "--num-variables", "16", "--num-values", "4", "--d-model", "16", "--num-heads", "2",
    "--head-dim", "8", "--d-ff", "32", "--eval-examples", "16", "--eval-every", "20",
    "--learning-rate", "1e-2",
]  # fmt: skip


def follow_chain(tokens, position, num_values):
    """The value and number of copies behind ``tokens[position]``, by walking back."""
    source, hops = tokens[position, 1], 0
    while source >= num_values:
        definer = np.flatnonzero(tokens[:position, 0] == source - num_values)
        assert len(definer) == 1  # assigned exactly once, before it is read
        position, source, hops = definer[0], tokens[definer[0], 1], hops + 1
    return source, hops


def test_tracking_labels_follow_the_chains_and_the_target_has_n_changes():
    for n in (0, 3, 8):
        source = TrackingSource(20, seed=1, stream=n, length=12, num_changes=n, num_variables=16)
        assert source.vocab_sizes == (16, 24)
        for i in range(len(source)):
            item = source[i]
            assert len(np.unique(item["tokens"][:, 0])) == 12
            assert len(np.unique(item["labels"])) == 4  # one value per chain
            for t in range(12):
                value, hops = follow_chain(item["tokens"], t, 8)
                assert (value, hops) == (item["labels"][t], item["depth"][t])
            assert item["depth"][-1] == n
    again = TrackingSource(20, seed=1, stream=3, length=12, num_changes=3, num_variables=16)
    np.testing.assert_array_equal(
        again[5]["tokens"],
        TrackingSource(20, seed=1, stream=3, length=12, num_changes=3, num_variables=16)[5][
            "tokens"
        ],
    )
    other = TrackingSource(20, seed=1, stream=4, length=12, num_changes=3, num_variables=16)
    assert not np.array_equal(again[5]["tokens"], other[5]["tokens"])


def test_boxes_labels_are_the_replayed_contents():
    source = BoxesSource(30, seed=2, length=16, num_boxes=3, num_objects=4)
    assert source.vocab_sizes == (4, 5, 3, 4)
    kinds = set()
    for i in range(len(source)):
        item = source[i]
        where = {}
        for t, (kind, obj, box, from_box) in enumerate(item["tokens"]):
            kinds.add(int(kind))
            if kind == PUT:
                assert obj not in where and from_box == 3
                where[obj] = box
            elif kind == REMOVE:
                assert where.pop(obj) == box and from_box == 3
            elif kind == MOVE:
                assert where[obj] == from_box != box
                where[obj] = box
            else:
                assert t == 15 and kind == QUERY and obj == 4
            contents = [int(where.get(o) == box) for o in range(4)]
            np.testing.assert_array_equal(item["labels"][t], contents)
    assert kinds == {PUT, REMOVE, MOVE, QUERY}


def test_sources_reject_bad_settings():
    with pytest.raises(ValueError, match="num_changes must be at most length - num_chains = 8"):
        TrackingSource(4, length=12, num_changes=9, num_variables=16)
    with pytest.raises(ValueError, match="num_variables must be an int >= 12, got 8"):
        TrackingSource(4, length=12, num_changes=2, num_variables=8)
    with pytest.raises(ValueError, match="num_boxes must be an int >= 2, got 1"):
        BoxesSource(4, num_boxes=1)
    with pytest.raises(IndexError):
        BoxesSource(4)[4]
    with pytest.raises(ValueError, match="max_changes must be <= length - num_chains = 8"):
        ChaCALConfig(length=12, max_changes=9)
    with pytest.raises(ValueError, match="attention must be a non-empty sequence of values, each"):
        ChaCALConfig(attention=("chain", "other"))


def test_decoder_is_causal():
    model = StatementDecoder((5, 7), 3, ("chain",), 6, 8, 2, 4, 8)
    tokens = jax.random.randint(jax.random.key(0), (2, 6, 2), 0, 5)
    variables = jax.jit(model.init)(jax.random.key(1), tokens)
    apply = jax.jit(model.apply)
    logits = apply(variables, tokens)
    changed = apply(variables, tokens.at[:, 4:].set(0))
    np.testing.assert_allclose(logits[:, :4], changed[:, :4], atol=1e-6)
    assert logits.shape == (2, 6, 3) and logits.dtype == jnp.float32
    assert not np.allclose(logits[:, 4:], changed[:, 4:])
    with pytest.raises(ValueError, match=r"tokens must have shape \[batch, length <= 6, 2\]"):
        model.apply(variables, tokens[..., :1])


@pytest.fixture(scope="module")
def tracking_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("chacal") / "tracking"
    assert main(["chacal-train", *TINY, "--run-dir", str(run_dir), "--no-progress"]) == 0
    return run_dir


def test_tracking_run_learns_and_reports_accuracy_by_changes(tracking_run, capsys):
    results = json.loads((tracking_run / "results.json").read_text())
    assert results["steps"] == 40 and results["attention"] == ["chain"]
    accuracy = results["accuracy_by_changes"]
    assert list(accuracy) == ["0", "1", "2", "3", "4"]
    assert all(0 <= a <= 1 for a in accuracy.values())
    # A direct assignment (n = 0) is read off the statement itself: learned in 40 steps,
    # far above guessing one of the 4 values.
    assert accuracy["0"] > 0.5
    assert all(0 < g < 0.99 for g in results["gammas"]["attention_0"])
    assert (tracking_run / "accuracy_by_changes.png").stat().st_size > 0
    metrics = [
        json.loads(line) for line in (tracking_run / "metrics.jsonl").read_text().splitlines()
    ]
    losses = [r["loss"] for r in metrics if r["split"] == "train"]
    assert losses[-1] < losses[0]
    # Rerunning the finished run resumes it: nothing is trained again.
    assert main(["chacal-train", *TINY, "--run-dir", str(tracking_run), "--no-progress"]) == 0
    assert "accuracy by state changes n: 0:" in capsys.readouterr().out


def test_boxes_command_and_usage_errors(tmp_path, capsys):
    run_dir = tmp_path / "boxes"
    args = ["chacal-train", "--task", "boxes", "--steps", "5", "--attention", "standard", "chain"]
    args += ["--length", "10", "--num-objects", "3", "--d-model", "16", "--num-heads", "2"]
    args += ["--head-dim", "8", "--d-ff", "16", "--eval-examples", "8", "--batch-size", "8"]
    args += ["--eval-every", "0"]
    assert main([*args, "--run-dir", str(run_dir), "--no-progress"]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert 0 <= results["query_exact_match"] <= 1
    assert 0 <= results["empty_answer_exact_match"] <= 1
    assert list(results["gammas"]) == ["attention_1"]  # the standard layer has no gamma
    assert "query exact match" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["chacal-train", "--task", "other"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["chacal-train", "--gamma", "1.0"])
    assert "gamma must be a finite number >= 0 and < 1, got 1.0" in capsys.readouterr().err


def test_chacal_train_runs_unchanged_as_two_processes(tmp_path):
    """The same command under ``training.launch``: 2 processes x 2 devices, 4 steps."""
    run = tmp_path / "two"
    argv = ["chacal-train", *TINY, "--steps", "4", "--eval-every", "2"]
    launched = multiprocess.run_local(["python", "-m", "seq_models", *argv, "--run-dir", str(run)])
    assert launched.returncode == 0, launched.output[-4000:]
    accuracy = sorted(line[4:] for line in launched.stdout.splitlines() if "accuracy by" in line)
    assert len(accuracy) == 2 and accuracy[0] == accuracy[1]  # [0] and [1] agree
    results = json.loads((run / "results.json").read_text())
    assert results["steps"] == 4
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"]) for r in records if r["split"] == "eval"] == [
        (2, "eval"),
        (4, "eval"),
    ]
    assert (run / "accuracy_by_changes.png").stat().st_size > 0
