"""In a real headless browser (Debian's chromium driven by Playwright): `hydranet serve` loads,
takes an uploaded image and shows the results; the demo's MP4 plays in a <video> element.

Skipped, with the reason, where Gradio, Playwright or a chromium binary is missing
(`.ci/run` installs chromium; Playwright's own browser downloads are never used).
"""

import functools
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from support import tiny_config

import hydranet
from hydranet.cli import main
from hydranet.data.io import write_png

REPO = Path(__file__).resolve().parents[1]
BROWSER_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--mute-audio",
]


def _chromium():
    for candidate in (
        os.environ.get("HYDRANET_CHROMIUM"),
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        shutil.which("google-chrome"),
        "/usr/bin/chromium",
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium binary found (apt-get install chromium, or set HYDRANET_CHROMIUM)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=BROWSER_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    tasks = [
        {"name": "segm", "kind": "segmentation", "classes": 4},
        {"name": "depth", "kind": "depth", "options": {"max_depth": 10.0}},
        {"name": "kind", "kind": "classification", "classes": 3},
    ]
    path = tmp_path_factory.mktemp("web") / "tiny.pt"
    hydranet.save_model(hydranet.build_model(tiny_config(tasks=tasks)), path)
    return path


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(ckpt, tmp_path_factory):
    pytest.importorskip("gradio", reason="Gradio is not installed (pip install 'hydranet[web]')")
    port = _free_port()
    work = tmp_path_factory.mktemp("serve")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "OMP_NUM_THREADS": "1",
        "GRADIO_TEMP_DIR": str(work / "gradio"),
    }
    log = open(work / "serve.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hydranet", "serve", "--weights", str(ckpt), "--port", str(port)],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail("hydranet serve did not start:\n" + (work / "serve.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_web_demo_in_a_headless_browser(browser, server, tmp_path):
    image = tmp_path / "room.png"
    rng = np.random.default_rng(0)
    write_png(image, rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    page = browser.new_page()
    outside = []

    def offline(route):  # the page must work with no internet: record and refuse anything else
        if not route.request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
            outside.append(route.request.url)
            return route.abort()
        return route.continue_()

    page.route("**/*", offline)
    try:
        page.goto(server, wait_until="domcontentloaded", timeout=60_000)
        page.wait_for_selector("#input input[type=file]", state="attached", timeout=60_000)
        page.set_input_files("#input input[type=file]", str(image))
        page.wait_for_selector("#input img", timeout=30_000)  # the upload is shown
        page.click("#run")
        page.wait_for_selector("#overlay img", timeout=60_000)
        page.wait_for_selector("#depth img", timeout=10_000)
        page.wait_for_function(
            "document.querySelector('#summary') && "
            "document.querySelector('#summary').innerText.includes('probability')",
            timeout=10_000,
        )
        size = page.evaluate("""async () => {
            const img = document.querySelector('#overlay img');
            if (!img.complete) await new Promise(r => img.addEventListener('load', r));
            return [img.naturalWidth, img.naturalHeight];
        }""")
        assert size == [64, 48]
        assert "segm" in page.inner_text("#summary")
        assert outside == []
    finally:
        page.close()


class _Static:
    def __init__(self, folder):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_demo_mp4_plays_in_the_browser(browser, ckpt, tmp_path, one_thread):
    pytest.importorskip("av", reason="PyAV is not installed (pip install 'hydranet[video]'): no H.264")
    site = tmp_path / "site"
    assert (
        main(
            [
                "demo",
                "--weights",
                str(ckpt),
                "--out",
                str(site / "demo.mp4"),
                "--max-frames",
                "6",
                "--clip-size",
                "64x48",
                "--fps",
                "12",
                "--no-progress",
                "--json",
                str(tmp_path / "s.json"),
            ]
        )
        == 0
    )
    import json

    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["codec"] == "h264"
    (site / "index.html").write_text('<!doctype html><video id="v" src="demo.mp4" muted playsinline></video>')
    static = _Static(site)
    page = browser.new_page()
    try:
        page.goto(static.url + "index.html")
        info = page.evaluate("""async () => {
            const v = document.getElementById('v');
            if (v.readyState < 2) {
                await new Promise((ok, bad) => {
                    v.addEventListener('loadeddata', ok);
                    v.addEventListener('error', () => bad(new Error('video error ' + (v.error && v.error.code))));
                });
            }
            const frame = new Promise(r => v.requestVideoFrameCallback((now, meta) => r(meta.presentedFrames)));
            await v.play();
            const presented = await frame;
            const c = document.createElement('canvas');
            c.width = v.videoWidth; c.height = v.videoHeight;
            const ctx = c.getContext('2d');
            ctx.drawImage(v, 0, 0);
            const px = ctx.getImageData(0, 0, c.width, c.height).data;
            let lit = 0;
            for (let i = 0; i < px.length; i += 4) lit += (px[i] + px[i + 1] + px[i + 2]) > 30 ? 1 : 0;
            return {duration: v.duration, width: v.videoWidth, height: v.videoHeight, presented, lit};
        }""")
    finally:
        page.close()
        static.close()
    h, w = stats["output_size"]
    assert (info["width"], info["height"]) == (w, h)
    assert info["duration"] == pytest.approx(6 / 12, abs=0.05)
    assert info["presented"] >= 1 and info["lit"] > 0.2 * w * h  # a decoded picture, not a black frame


def test_serve_without_gradio_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` now raises ImportError
    assert main(["serve", "--port", "1"]) == 2
    assert "pip install 'hydranet[web]'" in capsys.readouterr().err


def test_cli_startup_does_not_import_gradio():
    code = "import sys, hydranet, hydranet.cli; hydranet.cli.build_parser(); print('gradio' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    assert out == "False"


def test_predict_image_and_video_handlers(ckpt, tmp_path, one_thread):
    from hydranet.inference import Predictor
    from hydranet.tools.pointcloud import read_ply_header
    from hydranet.tools.web import model_choices, predict_image, predict_video

    assert model_choices("x.pt")[:2] == ["x.pt", "bundled synthetic model"] and "mtrn-kitti-joint" in model_choices()
    predictor = Predictor(ckpt)
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    overlay, dense, summary, ply = predict_image(predictor, rgb, tmp_path, palette="kitti")
    assert overlay.shape == (48, 64, 3) and dense.shape[0] == 48 and dense.shape[1] > 64  # map + scale bar
    assert set(summary) == {"segm", "depth", "kind"}
    valid = int(np.count_nonzero(np.isfinite(predictor.predict(rgb)["depth"]) & (predictor.predict(rgb)["depth"] > 0)))
    assert read_ply_header(ply)["vertices"] == valid
    import cv2

    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 8.0, (64, 48))
    for i in range(4):
        writer.write(np.roll(rgb, i, axis=1))
    writer.release()
    video, stats = predict_video(predictor, str(clip), tmp_path, max_frames=3, smooth=0.5)
    assert Path(video).is_file() and stats["frames"] == 3 and stats["smooth"] == 0.5
    assert predictor.smoother is None  # the shared predictor is left as it was
