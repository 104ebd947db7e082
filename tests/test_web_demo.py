"""In a real headless browser (Debian's chromium driven by Playwright): `hydranet serve` loads,
takes an uploaded image and shows the results; the demo's MP4 plays in a <video> element.

Skipped, with the reason, where Gradio, Playwright or a chromium binary is missing
(`.ci/run` installs chromium; Playwright's own browser downloads are never used).
"""

import functools
import http.server
import os
import re
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
        {"name": "normals", "kind": "normals"},
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
    (work / "mine").mkdir()  # an image of the user's own, offered as the first example
    write_png(work / "mine" / "room.png", np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hydranet",
            "serve",
            "--weights",
            str(ckpt),
            "--port",
            str(port),
            "--examples",
            str(work / "mine"),
        ],
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


# The page's main parts, in reading order; none may overlap another.
PARTS = ["#input", "#run", "#examples", "#overlay", "#legend", "#depth", "#normals", "#summary"]
VIEWPORTS = {"desktop": (1280, 800), "phone": (412, 915)}
BOXES = """(parts) => parts.map(s => {
    const e = document.querySelector(s);
    if (!e) return null;
    const r = e.getBoundingClientRect();
    return r.width && r.height ? [r.left, r.top, r.right, r.bottom] : null;
})"""
# The drawn picture of an <img> (object-fit: contain), and what the browser shows at its corners.
UNCOVERED = """(sel) => {
    const img = document.querySelector(sel + ' img');
    img.scrollIntoView({block: 'center'});
    const r = img.getBoundingClientRect();
    const k = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
    const w = img.naturalWidth * k, h = img.naturalHeight * k;
    const x0 = r.left + (r.width - w) / 2, y0 = r.top + (r.height - h) / 2;
    const corners = [[x0 + 3, y0 + 3], [x0 + w - 3, y0 + 3], [x0 + 3, y0 + h - 3], [x0 + w - 3, y0 + h - 3]];
    return corners.map(([x, y]) => document.elementFromPoint(x, y) === img);
}"""


def _overlap(a, b):
    return min(a[2], b[2]) - max(a[0], b[0]) > 1 and min(a[3], b[3]) - max(a[1], b[1]) > 1


def _screenshot_dir(tmp_path):
    folder = Path(os.environ.get("HYDRANET_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_web_demo_layout_and_results_at_desktop_and_phone_width(browser, server, tmp_path):
    """One server, two viewports: click an example, Run, then check what the page shows and where."""
    shots = _screenshot_dir(tmp_path)
    outside = []

    def offline(route):  # the page must work with no internet: record and refuse anything else
        if not route.request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
            outside.append(route.request.url)
            return route.abort()
        return route.continue_()

    for name, (width, height) in VIEWPORTS.items():
        page = browser.new_page(viewport={"width": width, "height": height})
        page.route("**/*", offline)
        try:
            page.goto(server, wait_until="domcontentloaded", timeout=60_000)
            page.wait_for_selector("#run", timeout=60_000)
            run = page.locator("#run").bounding_box()
            assert run["y"] >= 0 and run["y"] + run["height"] <= height, f"{name}: Run is below the fold"
            assert run["x"] >= 0 and run["x"] + run["width"] <= width
            # desktop: the user's own image (--examples), phone: a built-in synthetic frame
            assert page.locator("#examples img").count() == 4
            page.locator("#examples img").nth(0 if name == "desktop" else 1).click()
            page.wait_for_selector("#input img", timeout=30_000)
            page.click("#run")
            page.wait_for_selector("#legend .hn-chip", timeout=60_000)
            page.wait_for_selector("#normals img", timeout=10_000)  # the model has normals: shown
            page.wait_for_function("document.querySelector('#summary').innerText.includes('prediction')")
            page.wait_for_timeout(500)  # images settle
            page.screenshot(path=str(shots / f"web_{name}.png"))

            legend = page.inner_text("#legend")
            assert "class 0" in legend or "class 1" in legend  # the tiny model's class names, with swatches
            assert page.locator("#legend .hn-chip span").count() == page.locator("#legend .hn-chip").count()
            summary = page.inner_text("#summary")
            for task in ("segm", "depth", "kind"):
                assert task in summary
            assert re.search(r"class \d \(0\.\d\d\)", summary), summary  # a probability, rounded
            assert not re.search(r"\d\.\d{5,}", summary), summary  # no raw 16-digit floats
            assert "{" not in summary
            size = page.evaluate("""() => { const i = document.querySelector('#overlay img');
                return [i.naturalWidth, i.naturalHeight]; }""")
            assert size == ([96, 64] if name == "desktop" else [320, 240])
            for part in ("#depth", "#overlay", "#normals"):  # label and scale: nothing drawn over them
                assert page.evaluate(UNCOVERED, part) == [True] * 4, f"{name}: something covers {part}"

            boxes = dict(zip(PARTS, page.evaluate(BOXES, PARTS)))
            assert all(boxes.values()), boxes
            for i, a in enumerate(PARTS):
                for b in PARTS[i + 1 :]:
                    assert not _overlap(boxes[a], boxes[b]), f"{name}: {a} overlaps {b}"
            lefts = {round(box[0]) for box in boxes.values()}
            if name == "phone":  # one column: every part starts at the same x, one below the other
                assert max(lefts) - min(lefts) <= 2, boxes
            else:  # two columns
                assert max(lefts) - min(lefts) > width / 3, boxes
        finally:
            page.close()
    assert outside == []

    # Video: the example clip, with progress while it runs
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(server, wait_until="domcontentloaded", timeout=60_000)
        page.get_by_role("tab", name="Video").click()
        page.wait_for_selector("#run_video")
        page.evaluate("""() => { window.progress = [];
            new MutationObserver(() => document.querySelectorAll('.progress-text').forEach(
                e => window.progress.push(e.innerText))).observe(document.body, {subtree: true, childList: true,
                characterData: true}); }""")
        page.locator("#video_examples img, #video_examples video, #video_examples button").first.click()
        page.wait_for_selector("#video_in video", timeout=30_000)
        page.click("#run_video")
        page.wait_for_function("document.querySelector('#video_stats').innerText.includes('frames')", timeout=120_000)
        stats = page.inner_text("#video_stats")
        assert re.search(r"\d+ frames \(\d+x\d+, h264", stats), stats
        assert any(re.search(r"\d+/\d+ frame", t) for t in page.evaluate("window.progress"))
        page.screenshot(path=str(shots / "web_video.png"))
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
    from hydranet.tools.web import model_choices, predict_image, predict_video, video_markdown

    assert model_choices("x.pt")[:2] == ["x.pt", "bundled synthetic model"] and "mtrn-kitti-joint" in model_choices()
    predictor = Predictor(ckpt)
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    shown = predict_image(predictor, rgb, tmp_path, palette="kitti")
    ply = shown["ply"]
    assert shown["overlay"].shape == (48, 64, 3)
    assert shown["depth"].shape[0] == 48 and shown["depth"].shape[1] > 64  # map + scale bar
    assert shown["normals"].shape == (48, 64, 3)
    assert set(shown["summary"]) == {"segm", "depth", "normals", "kind"}
    ids, names, palette = shown["legend"]
    for c in ids:  # every class present has a swatch of its exact colour and its name
        r, g, b = palette[c]
        assert f"background:rgb({r},{g},{b})" in shown["legend_html"] and names[c] in shown["legend_html"]
    table = shown["markdown"].splitlines()
    assert table[0] == "| task | prediction |" and any(line.startswith("| **kind** | class ") for line in table)
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
    assert video_markdown(stats).startswith("**3 frames** (")
    assert predictor.smoother is None  # the shared predictor is left as it was
