"""hydranet serve: the web demo (Gradio; pip install 'hydranet[web]')."""

from __future__ import annotations

from .common import add_device_arg, port_number, positive_int, resolve_device

HELP = (
    "web demo in the browser: upload an image or a short video, or use the webcam; overlay, depth with "
    "its scale, image-level predictions, point cloud (needs: pip install 'hydranet[web]')"
)


def add_arguments(p) -> None:
    p.add_argument(
        "--weights",
        help="the model selected at start: a checkpoint, a known model name or an ONNX file written "
        "by `hydranet export` (default: the bundled synthetic model; others can be picked in the page)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 to share on the network)",
    )
    p.add_argument("--port", type=port_number, default=7860, help="port (default 7860)")
    p.add_argument("--max-video-frames", type=positive_int, default=120, help="frames of an uploaded video to process")
    p.add_argument(
        "--examples",
        nargs="+",
        default=[],
        metavar="IMAGE_OR_FOLDER",
        help="images (files or folders) offered as clickable examples, before the built-in synthetic ones",
    )
    add_device_arg(p)


def run(args) -> int:
    from ..errors import ConfigError
    from ..tools.web import build_app, launch

    if args.max_video_frames < 1:
        raise ConfigError(f"--max-video-frames must be at least 1, got {args.max_video_frames}")
    device = resolve_device(args.device)
    app = build_app(
        weights=args.weights, device=str(device), max_video_frames=args.max_video_frames, examples=args.examples
    )
    print(f"hydranet serve: http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
    # SIGTERM stops the server as Ctrl-C does (see cli.main), so its output folder is removed at exit
    launch(app, host=args.host, port=args.port)
    return 0
