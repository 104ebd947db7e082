"""Run ``hydranet`` command lines fast, each in its own process, with a memory and time bound.

A server process imports torch and Hydranet once (about 10 s here) and then forks one child per
command line: the child is a fresh process as far as the command can tell (its own folder,
stdout, stderr, process group and exit status), but starts in milliseconds. The parent of the
child (this module's server) measures its peak resident memory (``wait4``'s ``ru_maxrss``) and
its wall time, and kills its whole process group when it runs past the time bound. The child's
address space is capped (``RLIMIT_AS``) a few GB above the imports, so a command that tries to
allocate tens of GB fails there instead of taking the machine down.

Used by the fuzzer (``test_fuzz.py``) and the hand corpus (``test_hostile_inputs.py``). The
server never runs a torch operation itself: forking a process whose OpenMP pool is running is
unsafe, so the tests that build checkpoints do it in the pytest process and only pass paths.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_RSS_MB = 2048  # the bound of the issue: no process above about 2 GB resident
HEADROOM_GB = 3  # address space a child may add to the imports' before allocations fail

# The server: runs in its own interpreter (``python forkserver.py``); one JSON request per line.
SERVER = r"""
import io, json, os, resource, signal, sys, time, traceback

import matplotlib
matplotlib.use("Agg")
import cv2, onnx, onnxruntime, torch  # noqa: F401  (imported once, for every child)
import hydranet, hydranet.training, hydranet.inference, hydranet.evaluation  # noqa: F401
import hydranet.tools.predict, hydranet.tools.video, hydranet.training.plots  # noqa: F401
from hydranet.cli import build_parser, main

build_parser()  # imports every subcommand module
HEADROOM = int(sys.argv[1]) << 30


def vm_size():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def stub_serve():
    import hydranet.tools.web as web

    def build_app(*args, **kwargs):  # argument parsing only: no Gradio app, no server
        print("serve stub: build_app", kwargs)
        return None

    def launch(app, *args, **kwargs):
        print("serve stub: launch", kwargs)

    web.build_app, web.launch = build_app, launch


def child(req):
    os.setpgid(0, 0)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        out = os.open(req[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, fd)
        os.close(out)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    sys.stdin = open(os.devnull)
    os.chdir(req["cwd"])
    os.environ.update(req.get("env") or {})
    limit = vm_size() + HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    torch.set_num_threads(1)
    if req.get("stub_serve"):
        stub_serve()
    code = 1
    try:
        if req.get("python"):  # the server's own test: Python code instead of a command line
            exec(req["python"], {})
            code = 0
        else:
            code = main(req["argv"])
    except SystemExit as exc:  # as the interpreter does with sys.exit(main())
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code if isinstance(code, int) else 1)


print("ready", flush=True)
for line in sys.stdin:
    req = json.loads(line)
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        child(req)
    timed_out = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - t0 > req["timeout"]:
            timed_out = True
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            done, status, usage = os.wait4(pid, 0)
            break
        time.sleep(0.005)
    seconds = time.monotonic() - t0
    try:  # leftovers (e.g. data loader workers) go with the child
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    reply = {
        "code": os.waitstatus_to_exitcode(status),
        "timed_out": timed_out,
        "maxrss_mb": usage.ru_maxrss / 1024,
        "seconds": seconds,
    }
    print(json.dumps(reply), flush=True)
"""


@dataclass
class Outcome:
    """What one command did: exit code (negative: killed by that signal), output, peak memory, time."""

    argv: list
    cwd: Path
    code: int
    out: str
    err: str
    maxrss_mb: float
    seconds: float
    timed_out: bool
    timeout: float
    env: dict = field(default_factory=dict)

    def command(self) -> str:
        """A shell command that repeats this run (from the repository's checkout)."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        argv = " ".join(shlex.quote(str(a)) for a in self.argv)
        return (
            f"cd {shlex.quote(str(self.cwd))} && {env + ' ' if env else ''}PYTHONPATH={ROOT} python -m hydranet {argv}"
        )

    def problems(self, names=()) -> list:
        """Broken promises: a traceback, an exit code other than 0 or 2, a hang, more than 2 GB
        resident, or (exit 2) an error that names none of ``names`` (the file or field at fault)."""
        found = []
        text = self.out + self.err
        if self.timed_out:
            found.append(f"still running after {self.timeout:.0f} s (killed)")
        elif self.code < 0:
            found.append(f"killed by signal {-self.code}")
        if "Traceback (most recent call last)" in text:
            found.append("printed a traceback")
        if "can't allocate memory" in text or "MemoryError" in text:
            found.append(f"tried to allocate more than the {HEADROOM_GB} GB address-space bound")
        if self.maxrss_mb > MAX_RSS_MB:
            found.append(f"peak resident memory {self.maxrss_mb:.0f} MB > {MAX_RSS_MB} MB")
        if not self.timed_out and self.code not in (0, 2) and self.code >= 0:
            found.append(f"exit code {self.code}")
        if self.code == 2 and names:
            last = self.err.strip().splitlines()[-1] if self.err.strip() else ""
            if not any(str(n) in self.err for n in names):
                found.append(f"error names none of {sorted(map(str, names))}: {last!r}")
        return found

    def report(self, problems) -> str:
        tail = "\n".join((self.err or self.out).strip().splitlines()[-15:])
        return (
            f"{'; '.join(problems)}\n  reproduce: {self.command()}\n"
            f"  exit {self.code}, {self.seconds:.1f} s, {self.maxrss_mb:.0f} MB\n  output tail:\n{tail}"
        )


class ForkServer:
    """A server process that runs ``hydranet ARGV`` in forked children (see the module docstring)."""

    def __init__(self, env: dict | None = None):
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": "1",
            "MALLOC_ARENA_MAX": "2",
            "MPLBACKEND": "Agg",
            # offline: a known model name must fail fast, never download
            "HYDRANET_MODEL_BASE_URL": "http://127.0.0.1:9/",
            **(env or {}),
        }
        self.env.pop("HYDRANET_WEIGHTS", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(HEADROOM_GB)],
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(ROOT),
        )
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"fork server did not start: {line!r}")
        self.runs = 0

    def run(
        self, argv, cwd, timeout: float = 60, env: dict | None = None, stub_serve: bool = True, python: str = ""
    ) -> Outcome:
        """Run ``hydranet ARGV`` (or the Python code ``python``) in ``cwd``, a folder the command may write to."""
        cwd = Path(cwd)
        self.runs += 1
        logs = cwd.parent / f".{cwd.name}.{self.runs}"
        stdout, stderr = f"{logs}.out", f"{logs}.err"
        req = {
            "argv": [str(a) for a in argv],
            "cwd": str(cwd),
            "timeout": timeout,
            "env": env or {},
            "stub_serve": stub_serve,
            "python": python,
            "stdout": stdout,
            "stderr": stderr,
        }
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        texts = []
        for path in (stdout, stderr):
            p = Path(path)
            texts.append(p.read_text(errors="replace") if p.exists() else "")
            p.unlink(missing_ok=True)
        return Outcome(
            argv=req["argv"],
            cwd=cwd,
            code=reply["code"],
            out=texts[0],
            err=texts[1],
            maxrss_mb=reply["maxrss_mb"],
            seconds=reply["seconds"],
            timed_out=reply["timed_out"],
            timeout=timeout,
            env=dict(env or {}),
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
