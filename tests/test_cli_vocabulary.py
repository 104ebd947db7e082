"""One command-line vocabulary: --version, errors named after the command, the same flags and
help everywhere (every flag documented, its default shown), aliases for the older spellings."""

import argparse

import pytest

import hydranet
from hydranet.cli import build_parser, main
from hydranet.cli.common import DEPTH_CMAPS, PALETTE_NAMES, HelpFormatter

PARSER = build_parser()


def _options(command):
    """(action, the help text as printed) for every flag and positional of ``command``."""
    formatter = HelpFormatter(prog=f"hydranet {command}")
    for action in PARSER.commands[command]._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        yield action, (formatter._get_help_string(action) % vars(action) if action.help else "")


@pytest.mark.parametrize("command", sorted(PARSER.commands))
def test_every_flag_has_help_and_shows_its_default(command):
    for action, text in _options(command):
        name = "/".join(action.option_strings) or action.dest
        assert text.strip(), f"hydranet {command} {name}: no help text"
        switch = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._CountAction))
        if action.default is None or action.default == [] or switch or action.required:
            continue  # nothing to show: off, or given by the user
        assert "default" in text.lower(), f"hydranet {command} {name}: default {action.default!r} not shown: {text!r}"
    text = PARSER.commands[command].format_help()  # the formatter runs on every action without error
    assert text.startswith(f"usage: hydranet {command}")


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"hydranet {hydranet.__version__}"


@pytest.mark.parametrize("command", ["serve", "demo", "predict"])
def test_an_unknown_flag_is_the_commands_usage_error(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help-x"] + (["x.png"] if command == "predict" else []))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"hydranet {command}: error: unrecognized arguments: --help-x" in err
    assert f"usage: hydranet {command}" in err


def test_same_names_for_the_same_things():
    def flags(command):
        return {s: a for a, _ in _options(command) for s in a.option_strings}

    # one batch flag everywhere, the other spelling an alias of it
    for command in ("summary", "bench", "demo", "eval"):
        f = flags(command)
        assert f["--batch"] is f["--batch-size"], command
    # --weights is the checkpoint everywhere; pseudolabel's --teacher is the same flag
    assert flags("pseudolabel")["--weights"] is flags("pseudolabel")["--teacher"]
    args = PARSER.parse_args(["pseudolabel", "--teacher", "t.pt", "--list", "l.txt", "--out", "o"])
    assert args.weights == "t.pt"
    # the same palette and colour-map choices in predict and demo
    for command in ("predict", "demo"):
        f = flags(command)
        assert f["--cmap"].choices == DEPTH_CMAPS
        assert all(name in f["--palette"].help for name in PALETTE_NAMES)
    from hydranet.visualize import DEPTH_CMAPS as DRAWN
    from hydranet.visualize import NAMED_PALETTES

    assert tuple(NAMED_PALETTES) == PALETTE_NAMES and tuple(DRAWN) == DEPTH_CMAPS
    # the legacy trainer's underscore flags are aliases of the hyphenated ones
    a = PARSER.parse_args(["train", "--train_json", "a.json", "--initial_log_vars", "0,0"])
    b = PARSER.parse_args(["train", "--train-json", "a.json", "--initial-log-vars", "0,0"])
    assert vars(a) == vars(b) and a.train_json == "a.json" and a.initial_log_vars == "0,0"


def test_train_without_out_says_where_it_writes(monkeypatch, tmp_path, capsys):
    import hydranet.training

    seen = {}

    def fake_train(config, out, **kw):
        seen["out"] = out
        return {"status": "completed", "step": 1, "seconds": 0.0, "last": f"{out}/last.pt", "best": f"{out}/best.pt"}

    monkeypatch.setattr(hydranet.training, "train", fake_train)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--steps", "1"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert seen["out"] == "runs/train" and "runs/train" in first and "--out" in first
