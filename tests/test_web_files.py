"""Over HTTP on 127.0.0.1: `hydranet serve` returns files of its own output folder only, never
another file of the system temp folder or elsewhere (issue 23), and removes its folder at exit.

Skipped where Gradio is not installed."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _upload(base: str, path: Path) -> str:
    """POST a file to Gradio's upload route (as the page does); returns the server's path of it."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{base}/gradio_api/upload", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())[0]


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("gradio", reason="Gradio is not installed (pip install 'hydranet[web]')")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("GRADIO_TEMP_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hydranet", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        try:
            if _get(base + "/") == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"hydranet serve did not start: {proc.communicate()[0][-3000:]}")
    yield proc, base
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_serve_returns_no_file_outside_its_own_folder(server, tmp_path):
    proc, base = server
    secret = Path(tempfile.gettempdir()) / f"hydranet-secret-{uuid.uuid4().hex}.txt"
    secret.write_text("not for the network")
    try:
        mine = Path(_upload(base, secret))  # a file the demo owns: served (the route works)
        assert _get(f"{base}/gradio_api/file={mine}") == 200
        folder = mine.parent.parent
        up = f"{folder}/../{secret.name}"
        attempts = [
            str(secret),
            urllib.parse.quote(str(secret), safe=""),
            urllib.parse.quote(urllib.parse.quote(str(secret), safe=""), safe=""),
            up,
            up.replace("..", "%2e%2e"),
            up.replace("/", "%2F"),
            f"{mine.parent}/..%2F..%2F{secret.name}",
            "../" * 8 + str(secret).lstrip("/"),
            "/etc/passwd",
            str(ROOT / "setup.py"),  # the working folder is not served either
        ]
        for attempt in attempts:
            for route in ("/gradio_api/file=", "/file="):
                url = base + route + attempt
                status = _get(url) if "%" in attempt else _raw_status(base, route + attempt)
                assert status in (403, 404), (url, status)
        assert folder.name.startswith("hydranet_serve_") and folder.parent == Path(tempfile.gettempdir()).resolve()
    finally:
        secret.unlink()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert not folder.exists()  # removed at exit
    assert "Traceback" not in out


def _raw_status(base: str, path: str) -> int:
    """GET ``path`` as written (urllib would not normalise it either, but say so explicitly)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head = s.recv(64).decode("latin-1")
    return int(head.split()[1])


def test_user_mistakes_are_one_line_in_the_page_and_the_log(tmp_path, monkeypatch, caplog):
    """No image, and a known model that cannot be fetched (its server refuses): a gr.Error with
    a short message that Gradio does not print a traceback for, and one warning line."""
    gr = pytest.importorskip("gradio", reason="Gradio is not installed (pip install 'hydranet[web]')")
    from hydranet.tools.web import build_app

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # restored after the test
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HYDRANET_MODEL_BASE_URL", "http://127.0.0.1:9/")  # nothing listens: offline
    app = build_app()
    handlers = {f.fn.__name__: f.fn for f in app.fns.values()}
    image = np.zeros((32, 32, 3), np.uint8)
    for call, expected in [
        (lambda: handlers["on_image"](None, "bundled synthetic model", "", ""), "upload an image"),
        (lambda: handlers["on_image"](image, "mtrn-nyud-joint", "", ""), "mtrn-nyud-joint"),
        (lambda: handlers["on_image"](image, "", str(tmp_path / "none.pt"), ""), "none.pt"),
    ]:
        caplog.clear()
        with pytest.raises(gr.Error) as info:
            call()
        assert expected in info.value.message and not info.value.print_exception
        lines = [r.getMessage() for r in caplog.records if r.name == "hydranet.serve"]
        assert len(lines) == 1 and expected in lines[0] and "\n" not in lines[0]
