"""Plain helpers shared by the test files (fixtures live in conftest.py)."""

ALL_KINDS_TASKS = [
    {"name": "segm", "kind": "segmentation", "classes": 5},
    {"name": "depth", "kind": "depth"},
    {"name": "normals", "kind": "normals"},
    {"name": "maker", "kind": "classification", "classes": 3},
    {"name": "diameter", "kind": "regression", "outputs": 2},
]


def tiny_config(decoder="lightweight", encoder="mobilenet_v2", tasks=None, width=16):
    """A small model config for fast CPU tests."""
    model = {"encoder": encoder, "decoder": decoder, "width": width}
    if encoder == "mobilenet_v2":
        model["encoder_options"] = {"width_mult": 0.35}
    return {"model": model, "tasks": [dict(t) for t in (tasks or ALL_KINDS_TASKS)]}
