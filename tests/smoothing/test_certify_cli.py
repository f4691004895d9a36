"""``python -m smoothing certify`` end to end on tiny settings."""

import json

import numpy as np
import pytest

from smoothing.__main__ import main
from smoothing.certify_job import CERTIFICATES, PLOT_FILE, RESULTS_FILE, TSV_HEADER

TINY = [
    "--image-size", "8", "--widths", "4", "--hidden", "8", "--steps", "30",
    "--batch-size", "32", "--learning-rate", "0.01", "--examples", "6", "--n0", "100",
    "--n", "300", "--sample-batch", "100", "--alpha", "0.01", "--sigma", "0.25",
    "--certify-batch", "3",
]  # fmt: skip


@pytest.fixture(scope="module")
def certified_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("smoothing") / "run"
    assert main(["certify", *TINY, "--run-dir", str(run_dir), "--no-progress"]) == 0
    return run_dir


def _read_tsv(path):
    lines = path.read_text().splitlines()
    return lines[0], [line.split("\t") for line in lines[1:]]


def test_certify_writes_tsv_plot_and_results(certified_run):
    results = json.loads((certified_run / RESULTS_FILE).read_text())
    assert results["examples"] == 6 and results["settings"]["n"] == 300
    for name in CERTIFICATES:
        header, rows = _read_tsv(certified_run / f"certify_{name}.tsv")
        assert header + "\n" == TSV_HEADER
        assert [int(r[0]) for r in rows] == list(range(6))
        for _, label, predict, radius, correct, seconds in rows:
            assert int(correct) == (int(predict) == int(label))
            hours, minutes, secs = seconds.split(":")  # Cohen's h:mm:ss.ffffff
            assert float(radius) >= 0 and 3600 * int(hours) + 60 * int(minutes) + float(secs) > 0
            if int(predict) == -1:
                assert float(radius) == 0
        accuracy = list(results["certified_accuracy"][name].values())
        assert np.all(np.diff(accuracy) <= 0)
        # The reported accuracy at radius 0.25 is recomputed from the TSV.
        at = np.mean([int(r[4]) == 1 and float(r[3]) >= 0.25 for r in rows])
        assert results["certified_accuracy"][name]["0.25"] == pytest.approx(at)
    base = list(results["base_certified_accuracy"].values())
    assert len(base) == 5 and np.all(np.diff(base) <= 0) and base[0] <= results["clean_accuracy"]
    assert (certified_run / PLOT_FILE).stat().st_size > 0
    assert (certified_run / "loss_curve.png").stat().st_size > 0


def test_same_samples_and_reload(certified_run, capsys):
    """The three certificates share their samples: R_multi and Cohen predict the same
    class (the selection argmax) wherever both certify. A second run loads the trained
    classifier and reproduces the same rows (same noise seed), though its images are
    sampled in one group of 2 instead of groups of 3."""
    _, cohen = _read_tsv(certified_run / "certify_cohen.tsv")
    _, multi = _read_tsv(certified_run / "certify_multi.tsv")
    for a, b in zip(cohen, multi, strict=True):
        if a[2] != "-1" and b[2] != "-1":
            assert a[2] == b[2]
    before = (certified_run / "certify_lipschitz.tsv").read_text()
    metrics = (certified_run / "metrics.jsonl").read_text()
    # Certification settings are not part of the run's identity: 2 images this time.
    again = ["certify", *TINY, "--examples", "2", "--run-dir", str(certified_run), "--no-progress"]
    assert main(again) == 0
    after = (certified_run / "certify_lipschitz.tsv").read_text()
    strip = [[line.split("\t")[:5] for line in text.splitlines()] for text in (before, after)]
    assert len(strip[1]) == 3 and strip[0][:3] == strip[1]
    assert (certified_run / "metrics.jsonl").read_text() == metrics  # nothing retrained
    assert "Lipschitz-aware" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,message",
    [
        (["--sigma", "0"], "argument --sigma: sigma must be a finite number > 0, got 0.0"),
        (["--alpha", "1.5"], "alpha must be a finite number > 0 and < 1, got 1.5"),
        (["--n", "0"], "n must be an integer >= 1, got 0"),
        (["--n0", "-3"], "n0 must be an integer >= 1"),
        (["--examples", "0"], "examples must be an integer >= 1"),
        (["--split", "1"], "split must be a finite number > 0 and < 1"),
        (["--widths", "3"], "each an even integer"),
        (["--train-sigma", "-1"], "train_sigma must be a finite number >= 0"),
    ],
)
def test_bad_arguments_exit_with_a_message(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["certify", *args, "--run-dir", str(tmp_path / "bad"), "--no-progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_other_classifier_in_the_directory_is_refused(certified_run, capsys):
    with pytest.raises(SystemExit):
        main(["certify", *TINY, "--hidden", "6", "--run-dir", str(certified_run), "--no-progress"])
    assert "holds a different run" in capsys.readouterr().err
    assert main([]) == 2 and main(["train"]) == 2
