"""torch.hub entry points: the authors' Multi-Task RefineNet models (converted to Hydranet) and
the bundled synthetic model.

    model = torch.hub.load("path/to/hydranet", "mtrn_nyud_joint", source="local")
    outputs = model(images)   # {"segm": logits, "depth": metres (take abs)}

Each model downloads the authors' file on first use, checks its git blob id, converts it and
caches the result in torch's hub folder (see hydranet/weights/hub.py).
"""

dependencies = ["torch", "torchvision", "numpy", "yaml"]


def _known(name: str, device: str):
    from hydranet.weights.hub import load_model

    return load_model(name, device=device)


def mtrn_nyud_joint(device: str = "cpu"):
    """NYUD-40 segmentation + depth (ExpNYUD_joint.ckpt), eval mode."""
    return _known("mtrn-nyud-joint", device)


def mtrn_kitti_joint(device: str = "cpu"):
    """KITTI-6 segmentation + depth (ExpKITTI_joint.ckpt), eval mode."""
    return _known("mtrn-kitti-joint", device)


def mtrn_nyudkitti_joint(device: str = "cpu"):
    """NYUD-40 + KITTI-6 segmentation (tasks segm_nyud, segm_kitti) + depth (ExpNYUDKITTI_joint.ckpt)."""
    return _known("mtrn-nyudkitti-joint", device)


def mtrn_nyud_three(device: str = "cpu"):
    """NYUD-40 segmentation + depth + normals (ExpNYUD_three.ckpt), eval mode."""
    return _known("mtrn-nyud-three", device)


def hydranet_synthetic(device: str = "cpu"):
    """The bundled model trained on the built-in synthetic scenes (no download)."""
    from hydranet.inference.weights import bundled_weights_path
    from hydranet.weights.hub import load_model

    return load_model(bundled_weights_path(), device=device)
