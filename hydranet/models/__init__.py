"""Models: encoders, RefineNet decoders, heads, and the HydraNet that composes them."""

from __future__ import annotations

from ..config import ConfigLike, load_config
from ..tasks import TaskSpec, parse_tasks
from .encoders import ENCODERS, Encoder, build_encoder, check_encoder_name
from .heads import DenseHead, GlobalHead
from .hydranet import HydraNet
from .refinenet import DECODERS, ChainedResidualPool, LightRefineNet, RefineNet, ResidualConvUnit


def build_model(config: ConfigLike, progress: bool = True) -> HydraNet:
    """Build a :class:`HydraNet` from a config mapping or the path of a YAML file."""
    cfg = load_config(config)
    m = cfg["model"]
    encoder = build_encoder(m["encoder"], weights=m["encoder_weights"], progress=progress, **m["encoder_options"])
    decoder_kwargs = {"width": m["width"]}
    if m["crp_stages"] is not None:
        decoder_kwargs["crp_stages"] = m["crp_stages"]
    decoder = DECODERS[m["decoder"]](encoder.out_channels, encoder.strides, **decoder_kwargs)
    return HydraNet(encoder, decoder, parse_tasks(cfg["tasks"]), config=cfg)


__all__ = [
    "build_model",
    "HydraNet",
    "Encoder",
    "build_encoder",
    "check_encoder_name",
    "ENCODERS",
    "DECODERS",
    "LightRefineNet",
    "RefineNet",
    "ChainedResidualPool",
    "ResidualConvUnit",
    "DenseHead",
    "GlobalHead",
    "TaskSpec",
]
