"""``key=value`` overrides go anywhere on the command line, before or after flags."""

from __future__ import annotations

import pytest

from tuneforge.cli import main, parse_args

FLAGGED = {
    "train": ["train", "run.yaml", "--force", "x=1"],
    "plan": ["plan", "run.yaml", "--no-data", "x=1"],
    "data": ["data", "inspect", "run.yaml", "--out", "clean.jsonl", "x=1"],
    "sweep": ["sweep", "run.yaml", "--max-steps", "2", "x=1"],
    "chat": ["chat", "run.yaml", "--query", "hi", "x=1"],
    "api": ["api", "run.yaml", "--port", "9000", "x=1"],
    "export": ["export", "run.yaml", "--out", "merged", "x=1"],
    "eval": ["eval", "run.yaml", "--adapter", "saves/run", "x=1"],
    "predict": [
        "predict",
        "run.yaml",
        "--adapter",
        "saves/run",
        "--input",
        "in.jsonl",
        "--out",
        "out.jsonl",
        "x=1",
    ],
}


@pytest.mark.parametrize("argv", FLAGGED.values(), ids=FLAGGED)
def test_overrides_after_flags_are_overrides(argv):
    argv = [*argv[:2], "w=0", *argv[2:]] if argv[0] != "data" else [*argv[:3], "w=0", *argv[3:]]
    args = parse_args(argv)
    assert (args.config, args.overrides) == ("run.yaml", ["w=0", "x=1"])


@pytest.mark.parametrize(
    "argv",
    [
        ["chat", "--adapter", "saves/run", "run.yaml", "x=1"],
        ["chat", "run.yaml", "--adapter", "saves/run", "x=1"],
    ],
)
def test_an_optional_config_may_follow_a_flag(argv):
    args = parse_args(argv)
    assert (args.config, args.overrides) == ("run.yaml", ["x=1"])


def test_without_a_config_every_word_is_an_override():
    args = parse_args(["export", "x=1", "--out", "merged", "y=2"])
    assert (args.config, args.overrides) == (None, ["x=1", "y=2"])


def test_override_after_a_flag_is_validated(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text("dataset: x\n")
    assert main(["eval", "run.yaml", "--adapter", "saves/run", "lora_rank=0"]) == 2
    assert capsys.readouterr().err == (
        "tuneforge: error: run.yaml: lora_rank=0: Input should be greater than or equal to 1\n"
    )


@pytest.mark.parametrize(
    "argv", [["report", "saves/run", "x=1"], ["train", "run.yaml", "--force", "--bogus"]]
)
def test_unknown_words_are_still_refused(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
