"""A fuzzer, not a list (issue 23): hypothesis damages one thing at a time in a valid world (every
shipped config shrunk to a tiny model, a tiny checkpoint, its ONNX export, images, list files,
JSON records and results; see fuzz_world.py) and runs a real command on it.

The property, for every command line: exit 0 with a correct result (its ``--json`` report holds
finite numbers only; a wrong-typed or non-finite value is never accepted), or exit 2 with one
error line naming the file or the field at fault; never a traceback, never another exit code,
never more than 2 GB resident, never past the time bound. Each command runs in its own process
forked from a server that has imported Hydranet once (forkserver.py).

`make test` runs a seeded, bounded pass (about two minutes on two cores); `make fuzz` runs it for
FUZZ_MINUTES (default 30) with fresh random seeds. Every distinct counterexample is collected and
printed as a shell command that repeats it from a folder holding the files it needs (kept under
FUZZ_OUT).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fuzz_world import SHIPPED, scene
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

FUZZ_MINUTES = float(os.environ.get("FUZZ_MINUTES") or 0)  # 0: the bounded pass of `make test`
FUZZ_OUT = os.environ.get("FUZZ_OUT")  # where `make fuzz` keeps the counterexamples' folders
TIMEOUT = float(os.environ.get("FUZZ_TIMEOUT") or 120)  # seconds per command (a loaded machine)
NAN, INF = float("nan"), float("inf")

settings.register_profile(
    "ci",
    derandomize=True,  # seeded: the same examples every run
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking inside `make test`
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)
settings.register_profile(
    "fuzz",
    derandomize=False,
    deadline=None,
    database=None,
    phases=[Phase.generate],  # failures are collected, not raised: nothing to shrink
    suppress_health_check=list(HealthCheck),
)

# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------

WRONG = [None, NAN, INF, -INF, -1, 0, 10**12, 2**63, 1e308, "abc", "", "ü💥\u202e名", True, [], [1, 2], {}, {"x": 1}]
WRONG += [[[[[[]]]]], -1e-9, 0.5, "1e3", "  ", "\x00"]


def wrong_value():
    """Any value of the wrong kind: the classes of the issue plus what hypothesis invents."""
    return st.one_of(
        st.sampled_from(WRONG),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.lists(st.integers(-3, 3), max_size=3),
    )


def neighbour(value):
    """Values near a valid one: sign, scale, type of the same number."""
    if isinstance(value, bool):
        return st.sampled_from([not value, int(value), str(value).lower(), "yes", None])
    if isinstance(value, (int, float)):
        return st.sampled_from([-value, value * 1000, value + 0.5, str(value), value * 1e30, 0, -1])
    if isinstance(value, str):
        return st.sampled_from([value.upper(), value + "x", value[:-1], value * 3, [value], {value: 1}])
    if isinstance(value, list):
        return st.sampled_from([value[:1], value * 3, value + [value[0]] if value else [0], []])
    return st.sampled_from([None])


def mutant(value):
    return st.one_of(wrong_value(), neighbour(value))


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def must_be_refused(old, new) -> bool:
    """A replacement no valid config can hold: a number replaced by text, a container or a
    non-finite number; a bool by anything but a bool; a section by a scalar or a list."""
    if is_number(old):
        if isinstance(new, list):  # a list of numbers may be a per-output value (target_std: [2.0])
            return not all(is_number(v) and math.isfinite(v) for v in new)
        if isinstance(new, dict) or (isinstance(new, str) and not _numeric_text(new)):
            return True
        return isinstance(new, float) and not math.isfinite(new)
    if isinstance(old, bool):
        return not isinstance(new, bool) and new is not None
    if isinstance(old, dict):
        return new is not None and not isinstance(new, dict)
    if isinstance(old, str):
        return isinstance(new, (list, dict))
    return False


def _numeric_text(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def finite_json(path: Path):
    """The JSON report at ``path``; AssertionError when it holds NaN or infinity."""

    def refuse(token):
        raise AssertionError(f"{path.name} holds {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


# ---------------------------------------------------------------------------------------------
# Running one example
# ---------------------------------------------------------------------------------------------


class Fuzz:
    """The world, the fork server and the folder of the examples (one per test session)."""

    def __init__(self, world: Path, server, root: Path):
        self.world, self.server, self.root = world, server, root
        self.count = 0
        self.failures: list[str] = []  # distinct counterexamples of the running group
        self.seen: set = set()

    def scene(self, group: str) -> Path:
        self.count += 1
        folder = self.root / f"{group}-{self.count:05d}"
        shutil.rmtree(folder, ignore_errors=True)
        return scene(self.world, folder)

    def check(
        self, folder: Path, argv, names, refuse: str = "", result=None, timeout: float = TIMEOUT, damage: str = ""
    ):
        """Run ``argv`` in ``folder`` and check the property; on failure keep the folder, write
        repro.sh there and raise AssertionError with the command."""
        outcome = self.server.run(argv, folder, timeout=timeout)
        problems = outcome.problems([n for n in names if n])
        if outcome.code == 0 and not problems:
            if refuse:
                problems.append(f"exit 0: accepted {refuse}")
            try:
                at = [i for i, a in enumerate(argv[:-1]) if a == "--json"]
                report = argv[at[-1] + 1] if at else ""  # argparse keeps the last
                if report.strip():  # (an empty --json asks for no report)
                    finite_json(folder / report)
                if result:
                    result(folder)
            except AssertionError as exc:
                problems.append(f"exit 0 with a wrong result: {exc}")
            except (OSError, ValueError) as exc:
                problems.append(f"exit 0 without its result: {exc}")
        if not problems:
            shutil.rmtree(folder, ignore_errors=True)
            return outcome
        (folder / "repro.sh").write_text("#!/bin/sh\n" + outcome.command() + "\n")
        message = (f"[{damage}] " if damage else "") + outcome.report(problems)
        key = (
            argv[0],
            problems[0].split(":")[0],
            outcome.err.strip().splitlines()[-1][:80] if outcome.err.strip() else "",
        )
        if key not in self.seen:  # one report per command, problem and message
            self.seen.add(key)
            self.failures.append(message)
            print(f"\nCOUNTEREXAMPLE ({argv[0]}): {message}\n", flush=True)
        return outcome


def run_fuzz(fuzz: Fuzz, name: str, body, examples: int) -> None:
    """Run the hypothesis test ``body`` (a function of ``data``): ``examples`` seeded examples in
    `make test`; under `make fuzz`, fresh random examples until this group's share of FUZZ_MINUTES
    is spent. Every distinct counterexample is collected (a failing example does not stop the
    run), printed as a command, and listed when the test fails."""
    fuzz.failures, fuzz.seen = [], set()
    t0 = time.time()
    if not FUZZ_MINUTES:
        settings(settings.get_profile("ci"), max_examples=examples)(given(data=st.data())(body))()
    else:
        budget = FUZZ_MINUTES * 60 / len(GROUPS)
        while time.time() - t0 < budget:  # a fresh test each time: new random examples
            settings(settings.get_profile("fuzz"), max_examples=examples)(given(data=st.data())(body))()
    print(f"[fuzz {name}] {fuzz.count} examples so far, {time.time() - t0:.0f} s, {len(fuzz.failures)} found")
    assert not fuzz.failures, f"{name}: {len(fuzz.failures)} counterexample(s):\n\n" + "\n\n".join(fuzz.failures)


@pytest.fixture(scope="module")
def fuzz(fork_server, fuzz_world, tmp_path_factory):
    root = Path(FUZZ_OUT) if FUZZ_OUT else tmp_path_factory.mktemp("fuzz")
    root.mkdir(parents=True, exist_ok=True)
    return Fuzz(fuzz_world, fork_server, root)


# ---------------------------------------------------------------------------------------------
# 1. Configs: each leaf and each section of every shipped config, in the file or by --set
# ---------------------------------------------------------------------------------------------


def nodes(obj, path=()):
    """Every (path, value) below the root of a parsed config: sections, lists and leaves."""
    if path:
        yield path, obj
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from nodes(value, path + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from nodes(value, path + (i,))


def dotted(path) -> str:
    """``("tasks", 1, "options")`` -> ``tasks[1].options``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def set_at(cfg, path, value, delete=False):
    node = cfg
    for part in path[:-1]:
        node = node[part]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value


def _config_command(command: str, file: str) -> list:
    if command == "train":
        return ["train", "--config", file, "--out", "out", "--no-progress", "--json", "r.json"]
    if command == "summary":
        return ["summary", "--config", file, "--size", "64x64", "--json", "r.json"]
    return ["bench", "--config", file, "--size", "64x64", "--settings", "baseline", "--reps", "1", "--warmup", "0"]


# Mappings whose keys the user chooses: named validation sets, task-to-field maps, meta.
FREE_KEYS = {"val", "fields", "tasks", "class_offset", "label_dropout", "meta", "init_classes"}


def config_body(fuzz):
    def body(data):
        name = data.draw(st.sampled_from(SHIPPED), label="shipped config")
        cfg = yaml.safe_load((fuzz.world / f"cfg_{name}.yaml").read_text())
        path, old = data.draw(st.sampled_from(list(nodes(cfg))), label="path")
        how = data.draw(st.sampled_from(["replace", "replace", "replace", "delete", "typo"]), label="how")
        new, refuse = None, ""
        if how == "replace":
            new = data.draw(mutant(old), label="value")
            if path[-1] == "steps" and is_number(new) and new > 20:  # a long run is not a bug
                new = 20
            if path[-1] in ("steps", "train") and new in (None, {}):  # the default run: long, not wrong
                return
            set_at(cfg, path, new)
            if must_be_refused(old, new):
                refuse = f"{dotted(path)} = {new!r} (was {old!r})"
        elif how == "delete":
            if path[-1] in ("steps", "train"):  # the default run is thousands of steps: long, not wrong
                return
            set_at(cfg, path, None, delete=True)
        else:  # a misspelt key next to the real one: unknown keys are errors
            if not isinstance(path[-1], str):
                return
            parent = cfg
            for part in path[:-1]:
                parent = parent[part]
            if not isinstance(parent, dict) or path[-2:-1] and path[-2] in FREE_KEYS and "type" not in parent:
                return  # keys the user names (data sets, tasks, meta): no misspelling to catch
            parent[path[-1] + "_"] = old
            refuse = f"unknown key {dotted(path)}_"
        command = data.draw(st.sampled_from(["summary", "summary", "train", "train", "bench"]), label="command")
        folder = fuzz.scene("config")
        argv = _config_command(command, "c.yaml")
        by_set = how == "replace" and all(isinstance(p, str) for p in path) and data.draw(st.booleans(), label="--set")
        if by_set:
            base = yaml.safe_load((fuzz.world / f"cfg_{name}.yaml").read_text())
            (folder / "c.yaml").write_text(yaml.safe_dump(base, sort_keys=False, allow_unicode=True))
            argv += ["--set", f"{'.'.join(path)}={json.dumps(new, allow_nan=True)}"]
        else:
            (folder / "c.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        names = [str(p) for p in path if isinstance(p, str)] + ["c.yaml"]
        damage = (
            f"{name}.yaml: {how} {dotted(path)}"
            + (f" = {new!r}" if how == "replace" else "")
            + (" by --set" if by_set else "")
        )
        fuzz.check(folder, argv, names, refuse, damage=damage)

    return body


def test_fuzz_configs(fuzz):
    run_fuzz(fuzz, "configs", config_body(fuzz), examples=18)


# ---------------------------------------------------------------------------------------------
# 2. Flags: each flag of every command
# ---------------------------------------------------------------------------------------------

# Families of flag values. "count" flags are never given huge values (a long valid run is not a bug);
# "size" and "batch" flags are (a size no memory holds must be refused).
FAMILY_VALUES = {
    "count": ["0", "-1", "1.5", "abc", "", "1e3", "٣", "0x10", " 2", "nan", "999999999999999999999999999"],
    "batch": ["0", "-1", "1.5", "abc", "", "1000000000", "2", "nan", "1e9"],
    "float": ["nan", "inf", "-inf", "-1", "0", "1e308", "-0", "abc", "", "1e-320", "0x1p3", "١"],
    "fraction": ["nan", "inf", "-0.1", "1.0001", "2", "abc", "", "0", "1"],
    "size": ["0x5", "64x", "x64", "-64x64", "64x64x64", "100000x100000", "1e3x64", "64X64", "６４x64", "nanxnan"]
    + ["64x64,", "", "abc", "2147483648x1", "33x65", "1x1"],
    "sizes": ["64x64,,64x64", "64x64,100000x100000", ",", "64x64;32x32", "0x0", "65x33", "99999999x9"],
    "batches": ["1,0", "1,-1", "a", "1,,2", "1000000000", "2,2", "1.5"],
    "choice": ["", "ÄÖ", "x" * 300, "None", "-"],
    "text": ["", "ü💥", "x" * 5000, "-", "--", "../../etc/passwd"],
    "in_path": ["missing.pt", "frames", "/dev/null", "/proc/self/mem", "img.png", "list.txt", "c.yaml", "", "ü.pt"],
    "out_path": ["/proc/nowhere/x", "img.png/x", "/dev/full", ".", "", "frames", "tiny.pt", "x" * 300],
    "device": ["gpu", "cuda:-1", "cuda:99", "CPU", "", "mps", "cpu:0"],
    "settings": ["baseline,,default", "warp", "", "compile,compile", "onnxruntime_int8"],
    "workers_list": ["-1", "a", "0,,1", "100000"],
    "threads": ["0", "-1", "257", "100000", "999999999999999999999999999", "1.5", "abc", "", "nan"],
}

# command -> (base argv, {flag: family}); every base argv runs (exit 0) in the world.
FLAGS = {
    "summary": (
        ["summary", "--config", "cfg_synthetic.yaml", "--size", "64x64", "--json", "r.json"],
        {"--size": "size", "--batch": "batch", "--config": "in_path", "--weights": "in_path", "--json": "out_path"},
    ),
    "train": (
        ["train", "--config", "train.yaml", "--out", "out", "--steps", "1", "--no-progress", "--json", "r.json"],
        {
            "--steps": "count",
            "--out": "out_path",
            "--resume": "in_path",
            "--device": "device",
            "--weighting": "choice",
            "--encoder-weights": "in_path",
            "--train_json": "in_path",
            "--val_json": "in_path",
            "--use_uncertainty_weighting": "text",
            "--gradient_normalization": "text",
            "--initial_log_vars": "text",
            "--config": "in_path",
        },
    ),
    "eval": (
        ["eval", "--weights", "tiny.pt", "--config", "eval.yaml", "--no-progress", "--json", "r.json"],
        {
            "--batch-size": "batch",
            "--workers": "count",
            "--weights": "in_path",
            "--config": "in_path",
            "--device": "device",
            "--baseline": "in_path",
            "--metrics": "text",
            "--set": "text",
        },
    ),
    "predict": (
        ["predict", "img.png", "--weights", "tiny.pt", "--out", "pred", "--json", "r.json"],
        {
            "--size": "size",
            "--max-depth": "float",
            "--fx": "float",
            "--fy": "float",
            "--cx": "float",
            "--cy": "float",
            "--palette": "in_path",
            "--cmap": "choice",
            "--depth-format": "choice",
            "--ply": "choice",
            "--out": "out_path",
            "--weights": "in_path",
            "--device": "device",
        },
    ),
    "demo": (
        ["demo", "--weights", "tiny.pt", "--out", "d.mp4", "--clip-frames", "2", "--clip-size", "64x64"]
        + ["--no-progress", "--codec", "mp4v", "--json", "r.json"],
        {
            "--clip-size": "size",
            "--size": "size",
            "--batch": "batch",
            "--max-frames": "count",
            "--threads": "threads",
            "--fps": "float",
            "--alpha": "fraction",
            "--smooth": "fraction",
            "--max-depth": "float",
            "--seed": "count",
            "--input": "in_path",
            "--frame-png": "out_path",
            "--palette": "in_path",
            "--out": "out_path",
            "--codec": "choice",
        },
    ),
    "bench": (
        ["bench", "--weights", "tiny.pt", "--size", "64x64", "--settings", "baseline", "--reps", "1"]
        + ["--warmup", "0", "--no-e2e", "--json", "r.json"],
        {
            "--size": "sizes",
            "--batch": "batches",
            "--settings": "settings",
            "--reps": "count",
            "--warmup": "count",
            "--threads": "threads",
            "--frame-size": "sizes",
            "--calibration-frames": "count",
            "--loader-workers": "workers_list",
            "--encoder": "choice",
        },
    ),
    "export": (
        ["export", "--weights", "tiny.pt", "--out", "x.pt", "--format", "torchscript", "--size", "64x64"]
        + ["--no-check"],
        {
            "--size": "size",
            "--opset": "count",
            "--format": "choice",
            "--calibration-frames": "count",
            "--calibration": "in_path",
            "--out": "out_path",
            "--weights": "in_path",
        },
    ),
    "convert": (
        ["convert", "run/last.pt", "slim.pt", "--half", "--json", "r.json"],
        {"--json": "out_path"},
    ),
    "pseudolabel": (
        ["pseudolabel", "--teacher", "tiny.pt", "--list", "list.txt", "--out", "pl", "--json", "r.json"],
        {
            "--depth-scale": "float",
            "--confidence": "fraction",
            "--list": "in_path",
            "--teacher": "in_path",
            "--root": "in_path",
            "--out": "out_path",
            "--device": "device",
        },
    ),
    "compare": (
        ["compare", "run.json", "--baseline", "base.json", "--json", "r.json"],
        {"--baseline": "in_path", "--metrics": "text", "--json": "out_path"},
    ),
    "plot": (["plot", "run", "--out", "plots"], {"--out": "out_path"}),
    "serve": (
        ["serve", "--port", "7999"],
        {
            "--port": "count",
            "--max-video-frames": "count",
            "--host": "text",
            "--weights": "in_path",
            "--device": "device",
        },
    ),
}


# Text a command line can carry: execve's strings end at a NUL byte, so argv never holds one.
ARGV_TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=8)


def with_flag(argv: list, flag: str, value: str) -> list:
    """``argv`` with ``flag`` set to ``value`` (replacing its value when present)."""
    argv = list(argv)
    if flag in argv:
        i = argv.index(flag)
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            argv[i + 1] = value
            return argv
        argv.insert(i + 1, value)
        return argv
    return argv + [flag, value]


def flags_body(fuzz):
    def body(data):
        command = data.draw(st.sampled_from(sorted(FLAGS)), label="command")
        argv, flags = FLAGS[command]
        names = [command]
        for _ in range(data.draw(st.integers(1, 2), label="flags changed")):
            flag = data.draw(st.sampled_from(sorted(flags)), label="flag")
            family = flags[flag]
            value = data.draw(st.one_of(st.sampled_from(FAMILY_VALUES[family]), ARGV_TEXT), label=f"{flag} value")
            argv = with_flag(argv, flag, value)
            names += [flag, value, Path(value).name] if value.strip() else [flag]
        if data.draw(st.integers(0, 9), label="odd form") == 0:  # an unknown flag or a flag without value
            argv = argv + [data.draw(st.sampled_from(["--sizee", "--json", "-x", "--", "--set"]), label="extra")]
            names += [argv[-1], "argument", "arguments"]
        folder = fuzz.scene("flags")
        timeout = TIMEOUT * (3 if command in ("export", "bench", "plot") else 1)
        fuzz.check(folder, argv, names, timeout=timeout)

    return body


def test_fuzz_flags(fuzz):
    run_fuzz(fuzz, "flags", flags_body(fuzz), examples=30)


# ---------------------------------------------------------------------------------------------
# 3. Checkpoints: tensors (views, dtypes, shapes, values) and their metadata
# ---------------------------------------------------------------------------------------------

CKPT_COMMANDS = {
    "summary": ["summary", "--weights", "w.pt", "--size", "64x64", "--json", "r.json"],
    "predict": ["predict", "img.png", "--weights", "w.pt", "--out", "pred", "--json", "r.json"],
    "eval": ["eval", "--weights", "w.pt", "--config", "eval.yaml", "--no-progress", "--json", "r.json"],
    "convert": ["convert", "w.pt", "slim.pt", "--half", "--json", "r.json"],
    "demo": ["demo", "--weights", "w.pt", "--out", "d.mp4", "--clip-frames", "2", "--clip-size", "64x64"]
    + ["--no-progress", "--codec", "mp4v", "--json", "r.json"],
    "resume": ["train", "--config", "train.yaml", "--out", "run", "--resume", "w.pt", "--steps", "3"]
    + ["--allow-changes", "--no-progress", "--json", "r.json"],
}


def _rehash(ckpt):
    from hydranet.checkpoint import content_hash

    if isinstance(ckpt.get("config"), dict) and isinstance(ckpt.get("model"), dict) and "sha256" in ckpt:
        try:
            ckpt["sha256"] = content_hash(ckpt["config"], ckpt["model"])
        except Exception:  # the damage makes the hash uncomputable: the file keeps the old one
            pass


def ckpt_body(fuzz, nonfinite_with_hash: bool = False):
    """Damaged checkpoints; ``nonfinite_with_hash``: only NaN/inf weights in files whose content hash
    was recomputed (a crafted file)."""

    def body(data):
        command = data.draw(st.sampled_from(sorted(CKPT_COMMANDS)), label="command")
        source = "run/last.pt" if command in ("resume", "convert") else "tiny.pt"
        ckpt = torch.load(fuzz.world / source, weights_only=True)
        names = sorted(k for k, v in ckpt["model"].items() if torch.is_tensor(v) and v.numel() > 1)
        key = data.draw(st.sampled_from(names), label="tensor")
        t = ckpt["model"][key]
        what = data.draw(
            st.sampled_from(
                ["stride0", "overlap", "bloat", "dtype", "shape", "nan", "inf", "huge", "not_tensor", "drop", "extra"]
                + ["config", "meta", "version", "hash", "top", "truncate", "flip_byte"]
            ),
            label="damage",
        )
        if nonfinite_with_hash:
            what = data.draw(st.sampled_from(["nan", "inf"]), label="damage")
        refuse, rehash = "", data.draw(st.booleans(), label="recompute the hash")
        if what in ("nan", "inf"):
            rehash = nonfinite_with_hash
        if what == "stride0":
            ckpt["model"][key] = t.flatten()[:1].expand(t.shape)
            refuse = f"a stride-0 view as {key}"
        elif what == "overlap":
            if sum(n > 1 for n in t.shape) < 2:  # stride 1 along one real dimension is dense
                return
            ckpt["model"][key] = torch.as_strided(t.flatten().clone(), t.shape, (1,) * t.dim())
            refuse = f"an overlapping view as {key}"
        elif what == "bloat":  # 10^4 x more elements than the file holds
            ckpt["model"][key] = torch.zeros(1).expand(10_000, *t.shape)
            refuse, rehash = f"a 10^4 x bloated stride-0 {key}", False
        elif what == "dtype":
            dtype = data.draw(st.sampled_from([torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.bool]))
            dtype = dtype if t.is_floating_point() else torch.float32
            ckpt["model"][key] = t.to(dtype)
            if dtype in (torch.int64, torch.bool):
                refuse = f"{key} as {dtype}"
        elif what == "shape":
            shapes = [t.t() if t.dim() == 2 else t[None], t.flatten(), t[:0]]
            ckpt["model"][key] = data.draw(st.sampled_from([v for v in shapes if v.shape != t.shape]))
            refuse = f"{key} reshaped"
        elif what in ("nan", "inf", "huge"):
            if not t.is_floating_point():
                return
            t = t.clone(memory_format=torch.contiguous_format)  # trained weights may be channels_last
            t.view(-1)[data.draw(st.integers(0, t.numel() - 1))] = {"nan": NAN, "inf": INF, "huge": 3e38}[what]
            ckpt["model"][key] = t
            refuse = f"{what} in {key}" if what != "huge" or not rehash else ""
        elif what == "not_tensor":
            ckpt["model"][key] = data.draw(st.sampled_from(["abc", [1, 2], 3, None, {"a": t}]))
            refuse = f"a non-tensor as {key}"
        elif what == "drop":
            del ckpt["model"][key]
            refuse = f"without {key}"
        elif what == "extra":
            ckpt["model"][key + ".extra"] = t.clone()
            refuse = f"an unknown tensor {key}.extra"
        elif what == "config":
            path, old = data.draw(st.sampled_from(list(nodes(ckpt["config"]))), label="config path")
            new = data.draw(mutant(old), label="value")
            set_at(ckpt["config"], path, new)
            if must_be_refused(old, new):
                refuse = f"config {dotted(path)} = {new!r}"
        elif what in ("meta", "version", "hash", "top"):
            field = {"meta": "meta", "version": "version", "hash": "sha256", "top": "format"}[what]
            ckpt[field] = data.draw(wrong_value(), label=field)
            rehash = False
        folder = fuzz.scene("ckpt")
        if rehash:
            _rehash(ckpt)
        elif "sha256" in ckpt and what in ("nan", "inf"):
            del ckpt["sha256"]  # an old file: plausibility checks must catch the value
        elif "sha256" in ckpt and what not in ("hash",) and data.draw(st.booleans(), label="drop the hash"):
            del ckpt["sha256"]  # an old file: no hash to catch the damage
        target = folder / "w.pt"
        torch.save(ckpt, target)
        if what in ("truncate", "flip_byte"):
            raw = bytearray(target.read_bytes())
            at = data.draw(st.integers(0, len(raw) - 1), label="byte")
            if what == "truncate":
                raw = raw[:at]
                refuse = f"the file cut at byte {at}"
            else:
                raw[at] ^= 1 << data.draw(st.integers(0, 7), label="bit")
            target.write_bytes(bytes(raw))
        fuzz.check(folder, CKPT_COMMANDS[command], ["w.pt", key], refuse, damage=f"{source}: {what} {key}")

    return body


def test_fuzz_checkpoints(fuzz):
    run_fuzz(fuzz, "checkpoints", ckpt_body(fuzz), examples=18)


def test_fuzz_checkpoints_nonfinite_weights_with_a_valid_hash(fuzz):
    """A crafted file whose content hash was recomputed after a weight became NaN or infinite
    (open until guard checked finiteness in hashed files too; kept as its own group)."""
    run_fuzz(fuzz, "checkpoints: NaN/inf with a valid hash", ckpt_body(fuzz, nonfinite_with_hash=True), examples=4)


# ---------------------------------------------------------------------------------------------
# 4. JSON: compare/eval results and training records
# ---------------------------------------------------------------------------------------------

JSON_WRONG = ["NaN", "Infinity", "-Infinity", "true", "false", "null", '"0.5"', '"abc"', "[]", "{}", "1e999"]
JSON_WRONG += ["0", "-0.0", "1e308", "-1", "[0.5]", '{"v": 0.5}', "[" * 100000 + "]" * 100000]


def _json_text(obj, path, token: str) -> str:
    """``obj`` as JSON with the value at ``path`` replaced by the raw JSON text ``token``."""
    marker = "\x00MARK\x00"
    obj = json.loads(json.dumps(obj))
    set_at(obj, path, marker)
    return json.dumps(obj).replace(json.dumps(marker), token)


CLASSES = ("company", "model")  # the records' classification fields (ids or class names)


def json_body(fuzz):
    def body(data):
        kind = data.draw(st.sampled_from(["run.json", "base.json", "records.json"]), label="file")
        obj = json.loads((fuzz.world / kind).read_text())
        choice = data.draw(st.sampled_from(["value", "value", "whole"]), label="where")
        folder = fuzz.scene("json")
        if choice == "whole":
            text = data.draw(
                st.sampled_from(["", "{}", "[]", "null", "\ufeff" + json.dumps(obj), json.dumps(obj)[:-3], '"x"', "7"])
                | st.text(max_size=20),
                label="file text",
            )
            path, token = (), "(whole file)"
        else:
            path, _ = data.draw(st.sampled_from([(p, v) for p, v in nodes(obj) if not isinstance(v, (dict, list))]))
            token = data.draw(st.sampled_from(JSON_WRONG) | st.text(max_size=6).map(json.dumps), label="token")
            text = _json_text(obj, path, token)
        (folder / kind).write_text(text)
        if kind == "records.json":
            argv = ["train", "--config", "cfg_json_targets.yaml", "--out", "out", "--no-progress", "--json", "r.json"]
        elif data.draw(st.integers(0, 5), label="via eval") == 0:
            argv = ["eval", "--weights", "tiny.pt", "--config", "eval.yaml", "--no-progress", "--baseline", kind]
            argv += ["--metrics", "segm/miou,depth/abs_rel"]  # the metrics the baselines hold
            argv += ["--json", "r.json"]
        else:
            argv = ["compare", "run.json", "--baseline", "base.json", "--json", "r.json"]
        refuse = ""
        if token in ("NaN", "Infinity", "-Infinity", "true", "false", '"abc"', "[]", "{}", "1e999", '{"v": 0.5}'):
            # (a record's class may be a name: text is refused only where a number is needed)
            if "image" not in path and not (token == '"abc"' and kind == "records.json" and path[-1] in CLASSES):
                refuse = f"{dotted(path)} = {token}"
        names = [kind] + [str(p) for p in path if isinstance(p, str)]
        fuzz.check(folder, argv, names, refuse, damage=f"{kind}: {dotted(path) or 'whole file'} = {token[:40]}")

    return body


def test_fuzz_json(fuzz):
    run_fuzz(fuzz, "json", json_body(fuzz), examples=16)


# ---------------------------------------------------------------------------------------------
# 5. List files
# ---------------------------------------------------------------------------------------------

LIST_LINES = ["img.png seg.png depth.png", "img2.png - -", "img.png - depth.png", "img.png seg.png -"]


def list_body(fuzz):
    def body(data):
        header = data.draw(
            st.sampled_from(
                ["# image segmentation depth", "#image segmentation depth", "# IMAGE segmentation depth", ""]
                + ["# image segmentation depth depth", "# image segmentation", "# image\tsegmentation\tdepth"]
            ),
            label="header",
        )
        lines = data.draw(st.lists(st.sampled_from(LIST_LINES), min_size=0, max_size=4), label="rows")
        extra = data.draw(
            st.lists(
                st.sampled_from(
                    ["missing.png - -", "frames - -", "img.png seg.png depth.png extra.png", "- - -", "# comment"]
                    + ["img.png img.png img.png", "/dev/null - -", "img.png\x00 - -", "  ", "img.png list.txt -"]
                    + ["ü.png - -", "img.png " + "x" * 5000 + " -"]
                ),
                max_size=2,
            ),
            label="odd rows",
        )
        rows = lines + extra
        if rows:
            rows.insert(data.draw(st.integers(0, len(rows)), label="position"), rows.pop())
        newline = data.draw(st.sampled_from(["\n", "\r\n", "\r"]), label="line end")
        bom = data.draw(st.sampled_from(["", "\ufeff"]), label="byte-order mark")
        text = bom + newline.join([header] + rows if header else rows) + newline
        folder = fuzz.scene("list")
        (folder / "l.txt").write_bytes(text.encode("utf-8", "surrogatepass"))
        command = data.draw(st.sampled_from(["pseudolabel", "pseudolabel", "train"]), label="command")
        if command == "pseudolabel":
            argv = ["pseudolabel", "--teacher", "tiny.pt", "--list", "l.txt", "--out", "pl", "--json", "r.json"]
        else:
            cfg = yaml.safe_load((folder / "cfg_nyud.yaml").read_text())
            cfg["data"]["train"]["list"] = "l.txt"
            (folder / "c.yaml").write_text(yaml.safe_dump(cfg))
            argv = ["train", "--config", "c.yaml", "--out", "out", "--no-progress", "--json", "r.json"]
        sample_rows = [r for r in rows if r.strip() and not r.startswith("#")]

        def result(folder):
            if command != "pseudolabel":
                return
            report = finite_json(folder / "r.json")
            assert report["samples"] == len(sample_rows), f"{report['samples']} samples read, {len(sample_rows)} rows"
            written = (folder / report["list"]).read_text().splitlines() if report.get("list") else []
            assert not any("\ufeff" in line for line in written), "the byte-order mark was written into the list"
            assert written and written[0].startswith("# image"), f"the completed list starts {written[:1]}"

        names = ["l.txt"] + [t for row in extra for t in row.split() if t != "-"]  # or the file it names
        names += ["data.train"] if command == "train" else []  # (too few samples for a step)
        fuzz.check(folder, argv, names, result=result, damage=f"l.txt = {text[:120]!r}")

    return body


def test_fuzz_list_files(fuzz):
    run_fuzz(fuzz, "list files", list_body(fuzz), examples=10)


# ---------------------------------------------------------------------------------------------
# 6. PNG headers
# ---------------------------------------------------------------------------------------------


def png_chunks(raw: bytes) -> list:
    """[(type, data)] of a PNG file."""
    chunks, at = [], 8
    while at + 8 <= len(raw):
        (length,) = struct.unpack(">I", raw[at : at + 4])
        chunks.append((raw[at + 4 : at + 8], raw[at + 8 : at + 8 + length]))
        at += 12 + length
    return chunks


def png_bytes(chunks) -> bytes:
    out = b"\x89PNG\r\n\x1a\n"
    for kind, body in chunks:
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return out


def png_body(fuzz):
    def body(data):
        raw = (fuzz.world / "img.png").read_bytes()
        chunks = png_chunks(raw)
        ihdr = bytearray(chunks[0][1])
        what = data.draw(st.sampled_from(["size", "depth", "colour", "garbage", "truncate", "no_idat", "bytes"]))
        refuse = ""
        if what == "size":
            w = data.draw(st.sampled_from([0, 1, 16000, 100000, 2**31 - 1, 2**32 - 1]) | st.integers(0, 2**32 - 1))
            h = data.draw(st.sampled_from([0, 1, 16000, 100000, 2**31 - 1]) | st.integers(0, 2**32 - 1))
            ihdr[0:8] = struct.pack(">II", w, h)
            # more pixels than the data holds must be refused; fewer decode (the rest is ignored)
            refuse = f"a {w}x{h} header over 64x64 pixels" if w * h > 64 * 64 else ""
        elif what == "depth":
            ihdr[8] = data.draw(st.sampled_from([0, 1, 3, 16, 32, 255]))
        elif what == "colour":
            ihdr[9] = data.draw(st.sampled_from([1, 3, 4, 5, 7, 255]))
        if what in ("size", "depth", "colour"):
            chunks[0] = (b"IHDR", bytes(ihdr))
        if what == "no_idat":
            chunks = [c for c in chunks if c[0] != b"IDAT"]
        out = png_bytes(chunks)
        if what == "garbage":
            out += data.draw(st.binary(min_size=1, max_size=64))
        elif what == "truncate":
            out = out[: data.draw(st.integers(0, len(out) - 1))]
        elif what == "bytes":
            out = bytearray(out)
            out[data.draw(st.integers(0, len(out) - 1))] ^= 1 << data.draw(st.integers(0, 7))
            out = bytes(out)
        folder = fuzz.scene("png")
        command = data.draw(st.sampled_from(["predict", "predict", "demo", "pseudolabel", "train"]), label="command")
        (folder / "x.png").write_bytes(out)
        if command == "predict":
            argv = ["predict", "x.png", "--weights", "tiny.pt", "--out", "pred", "--json", "r.json"]
        elif command == "demo":
            shutil.copy(folder / "x.png", folder / "frames" / "1.png")
            argv = ["demo", "--input", "frames", "--weights", "tiny.pt", "--out", "d.mp4", "--no-progress"]
            argv += ["--codec", "mp4v", "--json", "r.json"]
        else:
            column = data.draw(st.sampled_from(["x.png seg.png depth.png", "img.png x.png -", "img.png - x.png"]))
            (folder / "l.txt").write_text("# image segmentation depth\n" + column + "\nimg.png seg.png depth.png\n")
            if command == "pseudolabel":
                argv = ["pseudolabel", "--teacher", "tiny.pt", "--list", "l.txt", "--out", "pl", "--json", "r.json"]
            else:
                cfg = yaml.safe_load((folder / "cfg_nyud.yaml").read_text())
                cfg["data"]["train"]["list"] = "l.txt"
                (folder / "c.yaml").write_text(yaml.safe_dump(cfg))
                argv = ["train", "--config", "c.yaml", "--out", "out", "--no-progress", "--json", "r.json"]
        fuzz.check(folder, argv, ["x.png", "1.png"], refuse if command == "predict" else "", damage=f"x.png: {what}")

    return body


def test_fuzz_png_headers(fuzz):
    run_fuzz(fuzz, "png", png_body(fuzz), examples=10)


# ---------------------------------------------------------------------------------------------
# 7. ONNX initialisers and metadata
# ---------------------------------------------------------------------------------------------


def onnx_body(fuzz):
    import onnx
    from onnx import numpy_helper

    def body(data):
        model = onnx.load(str(fuzz.world / "tiny.onnx"))
        inits = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and np.prod(i.dims) > 1]
        init = data.draw(st.sampled_from(inits), label="initialiser").name
        init = next(i for i in model.graph.initializer if i.name == init)
        what = data.draw(st.sampled_from(["exponent", "mantissa", "nan", "dims", "metadata", "truncate"]))
        refuse = ""
        if what in ("exponent", "mantissa", "nan"):
            values = numpy_helper.to_array(init).copy()
            flat = values.reshape(-1).view(np.uint32)
            at = data.draw(st.integers(0, flat.size - 1), label="element")
            if what == "exponent":
                flat[at] ^= np.uint32(1 << 29)
            elif what == "mantissa":
                flat[at] ^= np.uint32(1 << data.draw(st.integers(0, 22)))
            else:
                flat[at] = np.uint32(0x7FC00000)
            init.CopyFrom(numpy_helper.from_array(values, init.name))
            refuse = f"a changed initialiser {init.name} ({what})"
        elif what == "dims":
            init.dims[0] = init.dims[0] + 1
        elif what == "metadata":
            props = list(model.metadata_props)
            if not props:
                return
            prop = data.draw(st.sampled_from(props), label="metadata key")
            prop.value = data.draw(st.sampled_from(["", "{}", "null", prop.value[:-5], "[]"]) | st.text(max_size=10))
        folder = fuzz.scene("onnx")
        raw = model.SerializeToString()
        if what == "truncate":
            raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
        (folder / "w.onnx").write_bytes(raw)
        argv = ["eval", "--weights", "w.onnx", "--config", "eval.yaml", "--no-progress", "--json", "r.json"]
        fuzz.check(folder, argv, ["w.onnx"], refuse, damage=f"w.onnx: {what} {init.name}")

    return body


def test_fuzz_onnx(fuzz):
    run_fuzz(fuzz, "onnx", onnx_body(fuzz), examples=6)


def test_fork_server_sees_every_broken_promise(fork_server, tmp_path):
    """The bounds are real: a traceback, a hang, 2.3 GB resident and an allocation past the
    address-space cap are each reported; a clean run is not."""
    cases = {
        "ok": ("print('fine')", 30, []),
        "traceback": ("raise ValueError('boom')", 30, ["printed a traceback", "exit code 1"]),
        "hang": ("import time; time.sleep(60)", 2, ["still running after 2 s"]),
        "resident": ("import numpy as np; a = np.ones(2300 << 17)", 60, ["peak resident memory"]),
        "allocate": (
            "import numpy as np; a = np.empty(1 << 40, np.uint8)",
            30,
            ["printed a traceback", "tried to allocate", "exit code 1"],
        ),
    }
    for name, (code, timeout, expected) in cases.items():
        problems = fork_server.run([], tmp_path, timeout=timeout, python=code).problems()
        assert len(problems) == len(expected), (name, problems)
        for start in expected:
            assert any(p.startswith(start) for p in problems), (name, start, problems)
    assert fork_server.run([], tmp_path, python="print('fine')").out.strip() == "fine"


GROUPS = [
    "configs",
    "flags",
    "checkpoints",
    "checkpoints: NaN/inf with a valid hash",
    "json",
    "list files",
    "png",
    "onnx",
]
