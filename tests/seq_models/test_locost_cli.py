"""``python -m seq_models locost-train`` and ``summarize`` end to end on tiny settings."""

import json

import pytest

from seq_models.__main__ import main

TINY = [
    "--pretrain-steps", "2", "--steps", "2", "--batch-size", "2", "--input-length", "64",
    "--target-length", "8", "--eval-every", "0", "--checkpoint-every", "0",
    "--eval-examples", "2", "--num-beams", "2", "--max-train-examples", "16",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("summarization_data"))
    run_dir = tmp_path_factory.mktemp("locost") / "run"
    args = ["locost-train", *TINY, "--data-dir", data_dir, "--run-dir", str(run_dir)]
    assert main([*args, "--no-progress"]) == 0
    return run_dir, data_dir


def test_train_writes_both_stages_and_rouge_beside_the_baselines(trained, capsys):
    run_dir, _ = trained
    results = json.loads((run_dir / "results.json").read_text())
    assert results["stage"] == "finetune" and results["steps"] == 2
    assert results["test_examples"] == 2
    for name in ("rouge", "lead_3_rouge", "random_3_rouge"):
        assert set(results[name]) == {"rouge1", "rouge2", "rougeL"}
        assert all(0 <= v <= 1 for v in results[name].values())
    pretrain = json.loads((run_dir / "pretrain" / "results.json").read_text())
    assert pretrain["stage"] == "pretrain" and pretrain["steps"] == 2
    finetune_config = json.loads((run_dir / "finetune" / "config.json").read_text())
    assert finetune_config["init_from"] == str(run_dir / "pretrain")
    lines = (run_dir / "finetune" / "summaries.jsonl").read_text().splitlines()
    assert len(lines) == 2 and set(json.loads(lines[0])) == {"id", "summary", "model"}


def test_summarize_reads_any_length_and_rejects_bad_files(trained, tmp_path, capsys):
    run_dir, data_dir = trained
    text = tmp_path / "doc.txt"
    text.write_text("The function returns the sum of its arguments. " * 400, encoding="utf-8")
    capsys.readouterr()
    args = ["--run-dir", str(run_dir), "--data-dir", data_dir]
    assert main(["summarize", "--file", str(text), *args, "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "input tokens" in captured.err
    empty, binary = tmp_path / "empty.txt", tmp_path / "blob.bin"
    empty.write_text("  \n", encoding="utf-8")
    binary.write_bytes(b"\x00\x01\x02")
    for path, message in [
        (empty, "is empty: nothing to summarise"),
        (binary, "is a binary file"),
        (tmp_path / "missing.txt", "no such file"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(["summarize", "--file", str(path), *args])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["summarize", "--file", str(text), "--run-dir", str(tmp_path / "norun")])
    assert "holds no config.json" in capsys.readouterr().err
