"""The web demo behind ``hydranet serve`` (Gradio, ``pip install 'hydranet[web]'``).

    from hydranet.tools.web import build_app
    build_app(weights="model.pt").launch(server_name="127.0.0.1", server_port=7860)

Two tabs. *Image* (upload, webcam snapshot or clipboard): the segmentation overlay, the depth
map with its scale bar in metres, the image-level predictions and the point cloud in a 3-D
viewer. *Video* (a short clip or a webcam recording): the overlay video of ``hydranet demo``
(H.264 when PyAV is installed), optionally smoothed over time. The checkpoint is picked from
the bundled model and the known model names, or given as a path; models are loaded once and
kept. Everything is served locally: no CDN, no analytics.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import ConfigError, HydranetError

__all__ = ["build_app", "BUNDLED_CHOICE", "model_choices", "predict_image", "predict_video"]

log = logging.getLogger("hydranet.serve")
BUNDLED_CHOICE = "bundled synthetic model"
MAX_POINTS = 60_000


def model_choices(weights: Optional[str] = None) -> list:
    """The dropdown: ``weights`` (if given), the bundled model, the known model names."""
    from ..weights.hub import KNOWN_MODELS

    choices = [str(weights)] if weights else []
    return choices + [BUNDLED_CHOICE] + list(KNOWN_MODELS)


class _Predictors:
    """One Predictor per checkpoint, made on first use (thread-safe: Gradio runs handlers in threads)."""

    def __init__(self, device: str):
        self.device = device
        self.cache: dict = {}
        self.lock = threading.Lock()

    def get(self, choice: str, path: str = ""):
        from ..inference import Predictor, resolve_weights

        spec = (path or "").strip() or (None if choice in (None, "", BUNDLED_CHOICE) else choice)
        weights = str(resolve_weights(spec))
        with self.lock:
            if weights not in self.cache:
                self.cache[weights] = Predictor(weights, device=self.device)
            return self.cache[weights]


def predict_image(predictor, rgb: np.ndarray, out_dir: Path, palette=None) -> tuple:
    """(overlay RGB, value map with its scale (depth, else normals) or None, summary dict, PLY path or None)."""
    from .. import visualize as vis
    from .pointcloud import default_intrinsics, depth_to_points, write_ply

    pred = predictor.predict(rgb)
    h, w = rgb.shape[:2]
    style = vis.DrawStyle(config=dict(predictor.config), font_scale=vis.font_scale_for(h), palette=palette)
    overlay_task, map_task = vis.drawn_tasks(predictor.tasks)
    overlay, _ = vis.blend_overlay(rgb, pred, overlay_task, style)
    dense = vis.hstack(map_task.task_kind.draw_map(map_task, pred[map_task.name], style)) if map_task else None
    ply = None
    dep = pred.first("depth")
    if dep:
        k = default_intrinsics(h, w, predictor.config, predictor.tasks)
        step = max(1, int(np.ceil(np.sqrt(h * w / MAX_POINTS))))  # keep the viewer responsive
        points, colours = depth_to_points(
            pred[dep][::step, ::step],
            k["fx"] / step,
            k["fy"] / step,
            k["cx"] / step,
            k["cy"] / step,
            rgb[::step, ::step],
        )
        if len(points):
            ply = out_dir / f"cloud_{os.getpid()}_{threading.get_ident()}_{len(list(out_dir.iterdir()))}.ply"
            write_ply(ply, points, colours)
    return overlay, dense, pred.summary(), (str(ply) if ply else None)


def predict_video(
    predictor, video_path: str, out_dir: Path, max_frames: int, smooth: float = 0.0, palette=None
) -> tuple:
    """(overlay MP4 path, run statistics) for a short clip, as ``hydranet demo`` renders it."""
    from .video import open_source, run_demo

    out = out_dir / f"overlay_{os.getpid()}_{threading.get_ident()}_{len(list(out_dir.iterdir()))}.mp4"
    old = predictor.smoother
    from ..inference.smoothing import TemporalSmoother

    predictor.smoother = TemporalSmoother(predictor.tasks, smooth) if smooth else None
    try:
        stats = run_demo(
            open_source(video_path), predictor, out, max_frames=max_frames, progress=False, palette=palette
        )
    finally:
        predictor.smoother = old
    keep = ("frames", "output_size", "codec", "end_to_end_fps", "model_fps", "smooth")
    return str(out), {k: stats[k] for k in keep}


def own_output_folder() -> Path:
    """A fresh temporary folder for this demo's outputs, removed at exit, that Gradio is told
    to use for its uploads and cached outputs too (``GRADIO_TEMP_DIR``): the server's file
    route then serves this folder only, never the rest of the system temp folder."""
    folder = Path(tempfile.mkdtemp(prefix="hydranet_serve_")).resolve()
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)  # read by Gradio's components and server as they are made
    return folder


def _user_error(gr, message: str):
    """A short message in the page and one line in the server log (no traceback)."""
    log.warning("hydranet serve: %s", message)
    return gr.Error(message, print_exception=False)


def build_app(weights: Optional[str] = None, device: str = "cpu", max_video_frames: int = 120):
    """The Gradio Blocks app (call ``.launch()`` on it).

    Raises:
        ConfigError: Gradio is not installed.
    """
    try:
        import gradio as gr
    except ImportError as exc:
        raise ConfigError("the web demo needs Gradio: pip install 'hydranet[web]'") from exc

    predictors = _Predictors(device)
    out_dir = own_output_folder()
    choices = model_choices(weights)

    def on_image(image, choice, path, palette):
        if image is None:
            raise _user_error(gr, "upload an image (or take a webcam snapshot) first")
        try:
            return predict_image(
                predictors.get(choice, path), np.asarray(image, dtype=np.uint8), out_dir, palette or None
            )
        except HydranetError as exc:
            raise _user_error(gr, str(exc)) from None

    def on_video(video, choice, path, smooth, palette):
        if not video:
            raise _user_error(gr, "upload a short video (or record one with the webcam) first")
        try:
            return predict_video(
                predictors.get(choice, path), video, out_dir, max_video_frames, float(smooth), palette or None
            )
        except HydranetError as exc:
            raise _user_error(gr, str(exc)) from None

    with gr.Blocks(title="Hydranet", analytics_enabled=False) as app:
        gr.Markdown(
            "# Hydranet\nReal-time multi-task dense prediction: segmentation, depth, normals and "
            "image-level predictions from one network."
        )
        with gr.Row():
            model = gr.Dropdown(choices, value=choices[0], label="model", allow_custom_value=True, elem_id="model")
            path = gr.Textbox(label="or a checkpoint path", placeholder="runs/x/best.pt", elem_id="path")
            palette = gr.Textbox(
                label="palette (optional)", placeholder="nyud, kitti, cityscapes, synthetic", elem_id="palette"
            )
        with gr.Tab("Image"):
            with gr.Row():
                image = gr.Image(
                    sources=["upload", "webcam", "clipboard"], type="numpy", label="input", elem_id="input"
                )
                overlay = gr.Image(label="segmentation overlay", format="png", elem_id="overlay")
            with gr.Row():
                dense = gr.Image(label="depth (metres)", format="png", elem_id="depth")
                cloud = gr.Model3D(label="point cloud", display_mode="point_cloud", elem_id="cloud")
            summary = gr.JSON(label="predictions", elem_id="summary")
            run = gr.Button("Run", variant="primary", elem_id="run")
            run.click(on_image, [image, model, path, palette], [overlay, dense, summary, cloud])
        with gr.Tab("Video"):
            with gr.Row():
                video = gr.Video(
                    sources=["upload", "webcam"], label=f"input (first {max_video_frames} frames)", elem_id="video_in"
                )
                video_out = gr.Video(label="overlay", elem_id="video_out")
            smooth = gr.Slider(0.0, 0.95, value=0.5, step=0.05, label="temporal smoothing (0 = off)")
            stats = gr.JSON(label="run", elem_id="video_stats")
            run_video = gr.Button("Run on the video", variant="primary", elem_id="run_video")
            run_video.click(on_video, [video, model, path, smooth, palette], [video_out, stats])
    return app


def launch(app, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve ``app`` until interrupted (local fonts only: nothing is fetched from the internet)."""
    import gradio as gr

    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        ssr_mode=False,
        theme=theme,
        allowed_paths=[],  # outputs are served from the demo's own folder (see own_output_folder)
        footer_links=[],
        quiet=False,
    )
