"""The web demo behind ``hydranet serve`` (Gradio, ``pip install 'hydranet[web]'``).

    from hydranet.tools.web import build_app
    build_app(weights="model.pt").launch(server_name="127.0.0.1", server_port=7860)

Two tabs. *Image* (a clickable example, an upload, a webcam snapshot or the clipboard): the
segmentation overlay with its class legend, the depth map with its scale bar in metres, the
surface normals when the model has them, the image-level predictions as a table, and the point
cloud in a 3-D viewer. *Video* (the example clip, an upload or a webcam recording): the overlay
video of ``hydranet demo`` (H.264), optionally smoothed over time, with a progress bar. The
examples are frames and a clip of the built-in synthetic scenes, after any images the user
names (``hydranet serve --examples DIR``). Wide screens get two columns, phones one. The checkpoint is picked from
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
from typing import Optional, Sequence

import numpy as np

from .. import visualize as vis
from ..data.io import write_png
from ..data.synthetic import render_clip
from ..errors import ConfigError, HydranetError
from ..inference import Predictor, resolve_weights
from ..inference.smoothing import TemporalSmoother
from ..kinds import draw_style
from ..weights.hub import KNOWN_MODELS
from .mp4 import open_video_writer
from .pointcloud import default_intrinsics, depth_to_points, write_ply
from .predict import collect_images
from .video import open_source, run_demo

__all__ = [
    "build_app",
    "BUNDLED_CHOICE",
    "example_files",
    "model_choices",
    "predict_image",
    "predict_video",
    "predictions_markdown",
    "video_markdown",
]

log = logging.getLogger("hydranet.serve")
BUNDLED_CHOICE = "bundled synthetic model"
MAX_POINTS = 60_000


def model_choices(weights: Optional[str] = None) -> list:
    """The dropdown: ``weights`` (if given), the bundled model, the known model names."""

    choices = [str(weights)] if weights else []
    return choices + [BUNDLED_CHOICE] + list(KNOWN_MODELS)


class _Predictors:
    """One Predictor per checkpoint, made on first use (thread-safe: Gradio runs handlers in threads)."""

    def __init__(self, device: str):
        self.device = device
        self.cache: dict = {}
        self.lock = threading.Lock()

    def get(self, choice: str, path: str = ""):

        spec = (path or "").strip() or (None if choice in (None, "", BUNDLED_CHOICE) else choice)
        weights = str(resolve_weights(spec))
        with self.lock:
            if weights not in self.cache:
                self.cache[weights] = Predictor(weights, device=self.device)
            return self.cache[weights]


def _describe_rows(pred) -> list:
    """``[(task, readable prediction)]``: each kind's own short description, rounded and labelled."""
    summary = pred.summary()
    rows = []
    for name in pred.outputs:
        text = pred.tasks[name].task_kind.describe(pred.tasks[name], summary[name])
        if text:
            for prefix in (f"{name}: ", f"{name}="):
                text = text[len(prefix) :] if text.startswith(prefix) else text
            rows.append((name, text))
    return rows


def predictions_markdown(pred) -> str:
    """The predictions as a two-column Markdown table (task | prediction)."""
    rows = _describe_rows(pred)
    if not rows:
        return ""
    return "| task | prediction |\n|---|---|\n" + "\n".join(f"| **{t}** | {text} |" for t, text in rows)


LEGEND_STYLE = "display:flex;flex-wrap:wrap;gap:4px 14px;font-size:14px;padding:2px 0"
CHIP_STYLE = "display:inline-flex;align-items:center;gap:6px;white-space:nowrap"
SWATCH_STYLE = "width:14px;height:14px;border-radius:3px;border:1px solid rgba(0,0,0,.35);display:inline-block"


def legend_html(legend) -> str:
    """The overlay's class legend as HTML: a colour swatch and the name of each class present."""
    import html

    if legend is None:
        return ""
    ids, names, palette = legend
    chips = []
    for c in ids:
        r, g, b = (int(v) for v in palette[c]) if c < len(palette) else (0, 0, 0)
        name = html.escape(str(names[c]) if c < len(names) else f"class {c}")
        swatch = f'<span style="{SWATCH_STYLE};background:rgb({r},{g},{b})"></span>'
        chips.append(f'<span class="hn-chip" style="{CHIP_STYLE}">{swatch}{name}</span>')
    return f'<div class="hn-legend" style="{LEGEND_STYLE}">' + "".join(chips) + "</div>"


def predict_image(predictor, rgb: np.ndarray, out_dir: Path, palette=None) -> dict:
    """Everything the Image tab shows for one picture.

    Returns ``{"overlay", "legend" (ids, names, palette) or None, "legend_html", "depth"
    (the depth map with its scale) or None, "normals" or None, "markdown" (readable
    predictions), "summary" (plain data), "ply" (point cloud path) or None}``.
    """

    pred = predictor.predict(rgb)
    h, w = rgb.shape[:2]
    style = draw_style(predictor.config, vis.font_scale_for(h), palette=palette)
    overlay_task, _ = vis.drawn_tasks(predictor.tasks)
    overlay, legend = vis.blend_overlay(rgb, pred, overlay_task, style)
    if overlay_task is not None:
        vis.put_label(overlay, overlay_task.name, (3, 3), style.font_scale)
    maps = {}
    for task in predictor.tasks:  # every map kind the model has: depth, normals
        if task.task_kind.draw_role == "map" and task.task_kind.name not in maps:
            maps[task.task_kind.name] = vis.hstack(task.task_kind.draw_map(task, pred[task.name], style))
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
    return {
        "overlay": overlay,
        "legend": legend,
        "legend_html": legend_html(legend),
        "depth": maps.get("depth"),
        "normals": maps.get("normals"),
        "markdown": predictions_markdown(pred),
        "summary": pred.summary(),
        "ply": str(ply) if ply else None,
    }


def predict_video(
    predictor, video_path: str, out_dir: Path, max_frames: int, smooth: float = 0.0, palette=None, progress=False
) -> tuple:
    """(overlay MP4 path, run statistics) for a short clip, as ``hydranet demo`` renders it.

    ``progress=True`` runs the demo's progress bar (the web page follows it: Gradio's ``track_tqdm``).
    """

    out = out_dir / f"overlay_{os.getpid()}_{threading.get_ident()}_{len(list(out_dir.iterdir()))}.mp4"
    old = predictor.smoother

    predictor.smoother = TemporalSmoother(predictor.tasks, smooth) if smooth else None
    try:
        stats = run_demo(
            open_source(video_path), predictor, out, max_frames=max_frames, progress=progress, palette=palette
        )
    finally:
        predictor.smoother = old
    keep = ("frames", "output_size", "codec", "end_to_end_fps", "model_fps", "smooth")
    return str(out), {k: stats[k] for k in keep}


def video_markdown(stats: dict) -> str:
    """A run's statistics in one readable line."""
    h, w = stats["output_size"]

    def rate(v):
        return f"{v:.1f}" if v else "n/a"

    smooth = f", smoothed {stats['smooth']:g}" if stats.get("smooth") else ""
    return (
        f"**{stats['frames']} frames** ({w}x{h}, {stats['codec']}{smooth}): {rate(stats['end_to_end_fps'])} FPS "
        f"end to end, model alone {rate(stats['model_fps'])} FPS"
    )


def example_files(folder: Path, images: Sequence = (), clip_frames: int = 16) -> tuple:
    """``(example images, example videos)``: three frames of the built-in synthetic scenes and a
    short synthetic clip written into ``folder``, then the user's own ``images`` (files, or
    folders of images; copied into ``folder``)."""

    folder.mkdir(parents=True, exist_ok=True)
    stills = []
    for seed in (1, 2, 3):
        rgb = render_clip(1, (240, 320), seed)[0][0]
        stills.append(str(write_png(folder / f"synthetic_scene_{seed}.png", rgb)))
    clip = folder / "synthetic_clip.mp4"
    frames = render_clip(clip_frames, (240, 320), 0)
    writer = open_video_writer(clip, 12.0, frames[0][0].shape[:2])
    for rgb, _, _ in frames:
        writer.write(rgb)
    writer.close()
    own = []
    for k, image in enumerate(collect_images(images) if images else []):
        # copied into the demo's own folder: the server serves that folder only
        own.append(str(shutil.copyfile(image, folder / f"user_{k:03d}{image.suffix.lower()}")))
    return own + stills, [str(clip)]


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


def build_app(weights: Optional[str] = None, device: str = "cpu", max_video_frames: int = 120, examples: Sequence = ()):
    """The Gradio Blocks app (call ``.launch()`` on it).

    ``examples``: image files or folders shown as clickable examples, before the built-in
    synthetic frames and clip.

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
    example_images, example_videos = example_files(out_dir / "examples", examples)

    def on_image(image, choice, path, palette):
        if image is None:
            raise _user_error(gr, "pick an example, upload an image or take a webcam snapshot first")
        try:
            r = predict_image(predictors.get(choice, path), np.asarray(image, dtype=np.uint8), out_dir, palette or None)
        except HydranetError as exc:
            raise _user_error(gr, str(exc)) from None
        return (
            r["overlay"],
            r["legend_html"],
            gr.update(value=r["depth"], visible=r["depth"] is not None),
            gr.update(value=r["normals"], visible=r["normals"] is not None),
            r["markdown"],
            r["ply"],
        )

    def on_video(video, choice, path, smooth, palette, progress=gr.Progress(track_tqdm=True)):
        if not video:
            raise _user_error(gr, "pick the example clip, upload a short video or record one with the webcam first")
        try:
            out, stats = predict_video(
                predictors.get(choice, path),
                video,
                out_dir,
                max_video_frames,
                float(smooth),
                palette or None,
                progress=True,
            )
        except HydranetError as exc:
            raise _user_error(gr, str(exc)) from None
        return out, video_markdown(stats)

    with gr.Blocks(title="Hydranet", analytics_enabled=False) as app:
        gr.Markdown(
            "## Hydranet\nSegmentation, depth, surface normals and image-level predictions from one network. "
            "Click an example (or upload your own), then **Run**.",
            elem_id="header",
        )
        with gr.Row():
            model = gr.Dropdown(
                choices, value=choices[0], label="model", allow_custom_value=True, elem_id="model", min_width=200
            )
            path = gr.Textbox(label="or a checkpoint path", placeholder="runs/x/best.pt", elem_id="path", min_width=200)
            palette = gr.Textbox(
                label="palette (optional)",
                placeholder="nyud, kitti, cityscapes, synthetic",
                elem_id="palette",
                min_width=200,
            )
        _image_tab(gr, on_image, example_images, [model, path, palette])
        _video_tab(gr, on_video, example_videos, max_video_frames, [model, path, palette])
    return app


def _image_tab(gr, on_image, example_images, choice: list) -> None:
    """The Image tab: input, Run, examples; overlay, legend, depth, normals, summary, point cloud.
    ``choice``: the model dropdown, checkpoint path and palette fields."""
    model, path, palette = choice
    with gr.Tab("Image"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=360):
                image = gr.Image(
                    sources=["upload", "webcam", "clipboard"],
                    type="numpy",
                    label="input",
                    elem_id="input",
                    height=260,
                )
                run = gr.Button("Run", variant="primary", elem_id="run")
                gr.Examples(example_images, inputs=[image], label="examples (click one)", elem_id="examples")
            with gr.Column(scale=3, min_width=360):
                # Labels are drawn in the pictures; Gradio's own label and buttons would cover them.
                bare = {"format": "png", "show_label": False, "buttons": [], "min_width": 300}
                with gr.Row(equal_height=False):
                    with gr.Column(min_width=300):
                        overlay = gr.Image(label="segmentation", elem_id="overlay", **bare)
                        legend = gr.HTML(elem_id="legend")
                    depth = gr.Image(label="depth (metres)", elem_id="depth", **bare)
                with gr.Row(equal_height=False):
                    normals = gr.Image(label="surface normals", elem_id="normals", visible=False, **bare)
                    with gr.Column(min_width=300):
                        summary = gr.Markdown(elem_id="summary")
                cloud = gr.Model3D(label="point cloud", display_mode="point_cloud", elem_id="cloud")
        run.click(on_image, [image, model, path, palette], [overlay, legend, depth, normals, summary, cloud])


def _video_tab(gr, on_video, example_videos, max_video_frames: int, choice: list) -> None:
    """The Video tab: input, smoothing, Run, the example clip; the overlay video and its figures."""
    model, path, palette = choice
    with gr.Tab("Video"):
        with gr.Row(equal_height=False):
            with gr.Column(min_width=360):
                video = gr.Video(
                    sources=["upload", "webcam"],
                    label=f"input (first {max_video_frames} frames)",
                    elem_id="video_in",
                )
                smooth = gr.Slider(0.0, 0.95, value=0.5, step=0.05, label="temporal smoothing (0 = off)")
                run_video = gr.Button("Run on the video", variant="primary", elem_id="run_video")
                gr.Examples(example_videos, inputs=[video], label="example clip (click it)", elem_id="video_examples")
            with gr.Column(min_width=360):
                video_out = gr.Video(label="overlay", elem_id="video_out", show_label=False, buttons=[])
                stats = gr.Markdown(elem_id="video_stats")
        run_video.click(on_video, [video, model, path, smooth, palette], [video_out, stats])


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
