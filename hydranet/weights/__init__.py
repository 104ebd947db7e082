"""Pretrained weights: the original Multi-Task RefineNet checkpoints, converted to Hydranet.

    from hydranet.weights import load_original, convert
    model = load_original("ExpNYUD_joint.ckpt")      # a HydraNet in eval mode
    convert("ExpNYUD_joint.ckpt", "nyud_joint.pt")   # then hydranet.load_model("nyud_joint.pt")

ImageNet encoder weights are handled by the encoders themselves
(``model.encoder_weights: imagenet`` or a local file, see ``hydranet.models.encoders``).
See ``weights/README.md`` for the known checkpoints.
"""

from .mtrn import (
    DATASETS,
    KNOWN_CHECKPOINTS,
    NORMALIZATION,
    Layout,
    convert,
    convert_file,
    convert_state_dict,
    detect_layout,
    load_original,
    map_key,
    nyud_class_names,
    original_key_shapes,
    read_original,
    strip_module_prefix,
    synthetic_original_state_dict,
)

__all__ = [
    "DATASETS",
    "KNOWN_CHECKPOINTS",
    "NORMALIZATION",
    "Layout",
    "convert",
    "convert_file",
    "convert_state_dict",
    "detect_layout",
    "load_original",
    "map_key",
    "nyud_class_names",
    "original_key_shapes",
    "read_original",
    "strip_module_prefix",
    "synthetic_original_state_dict",
]
