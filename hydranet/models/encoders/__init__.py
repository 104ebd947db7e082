"""Encoders: image -> list of feature maps, from high to low resolution (see :mod:`.base`).

``ENCODERS`` maps a config name to a builder ``fn(weights=None, progress=True, **options)``
(one module per family); ``timm:NAME`` names any timm backbone (:mod:`.timm_backbones`).
``weights`` is ``None`` (random init), ``"imagenet"`` (the providing library's weights
mechanism, which needs network or its cache) or the path of a local state-dict file.
"""

from __future__ import annotations

from typing import Callable, Literal, Optional

from pydantic import model_validator

from ...config import encoder_options_model
from ...errors import ConfigError
from ...limits import MAX_VIT_GRID
from ...schema.errors import validate
from ...schema.registry import register_options
from ...schema.types import Field, Float, Int, OpenSection, Section
from .base import Encoder, StagedEncoder
from .efficientnet import efficientnet_b0
from .mobilenet import MTRNInvertedResidual, MTRNMobileNetV2, mobilenet_v2, mobilenet_v3_large, mtrn_mobilenet_v2
from .resnet import resnet18, resnet34, resnet50, resnet101
from .timm_backbones import PREFIX as TIMM_PREFIX
from .timm_backbones import TimmEncoder, timm_encoder
from .vit import VIT_CONFIGS, ViTEncoder, vit_b_16, vit_s_16

ENCODERS: dict[str, Callable[..., Encoder]] = {
    "mobilenet_v2": mobilenet_v2,
    "mtrn_mobilenet_v2": mtrn_mobilenet_v2,
    "mobilenet_v3_large": mobilenet_v3_large,
    "efficientnet_b0": efficientnet_b0,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "vit_s_16": vit_s_16,
    "vit_b_16": vit_b_16,
}


# ---------------------------------------------------------------------- encoder_options schemas
class NoEncoderOptions(Section):
    """This encoder takes no ``encoder_options``."""


class WidthMultOptions(Section):
    """``encoder_options`` of the MobileNets."""

    width_mult: Float = Field(1.0, gt=0, le=4.0, description="channel multiplier of every layer")


class TimmOptions(OpenSection):
    """``encoder_options`` of ``timm:MODEL``: keyword arguments of ``timm.create_model`` (plain data)."""


MAX_VIT_DEPTH = 64  # ViT-22B has 48 blocks
MAX_VIT_WIDTH = 2048  # ViT-G/14 has 1664


def vit_options(name: str, patch: int, depth0: int, width0: int, heads0: int) -> type:
    """The ``encoder_options`` schema of a ViT preset (its own defaults)."""

    class ViTOptions(Section):
        __doc__ = f"``encoder_options`` of {name} (patch {patch}, {depth0} blocks, width {width0}, {heads0} heads)."

        image_size: Int = Field(
            224,
            ge=patch,
            le=patch * MAX_VIT_GRID,
            description=f"side of the position-embedding grid in pixels (a multiple of {patch}; "
            "other sizes are interpolated)",
        )
        depth: Optional[Int] = Field(None, ge=1, le=MAX_VIT_DEPTH, description=f"blocks (null: {depth0})")
        width: Optional[Int] = Field(None, ge=8, le=MAX_VIT_WIDTH, description=f"token width (null: {width0})")
        heads: Optional[Int] = Field(None, ge=1, le=64, description=f"attention heads (null: {heads0})")
        mlp_dim: Optional[Int] = Field(
            None, ge=1, le=4 * MAX_VIT_WIDTH, description="MLP hidden size (null: 4 x width)"
        )
        out_blocks: Optional[tuple[Int, Int, Int, Int]] = Field(
            None, description="the four blocks (0-based, non-decreasing) read by the decoder (null: DPT's)"
        )
        channels: Optional[tuple[Int, Int, Int, Int]] = Field(
            None, description="channels of the four maps (null: width/8, width/4, width/2, width)"
        )
        global_pool: Literal["token", "mean"] = Field("token", description="image-level feature: class token or mean")
        readout: Literal["ignore", "add"] = Field("ignore", description="class token in the maps: ignore or add")
        dropout: Float = Field(0.0, ge=0, lt=1, description="dropout in the blocks")

        @model_validator(mode="after")
        def _check(self):
            w, h, d = self.width or width0, self.heads or heads0, self.depth or depth0
            if w % h:
                raise ValueError(f"heads: {h} does not divide the width {w}")
            if self.out_blocks is not None and (
                list(self.out_blocks) != sorted(self.out_blocks) or not all(0 <= b < d for b in self.out_blocks)
            ):
                raise ValueError(
                    f"out_blocks: four non-decreasing block indices in 0..{d - 1}, got {list(self.out_blocks)}"
                )
            if self.channels is not None and not all(1 <= c <= MAX_VIT_WIDTH for c in self.channels):
                raise ValueError(f"channels: four channel counts from 1 to {MAX_VIT_WIDTH}, got {list(self.channels)}")
            return self

    ViTOptions.__name__ = ViTOptions.__qualname__ = f"ViTOptions_{name}"
    return ViTOptions


ENCODER_OPTIONS: dict[str, type] = {
    "mobilenet_v2": WidthMultOptions,
    "mtrn_mobilenet_v2": NoEncoderOptions,
    "mobilenet_v3_large": WidthMultOptions,
    "efficientnet_b0": NoEncoderOptions,
    "resnet18": NoEncoderOptions,
    "resnet34": NoEncoderOptions,
    "resnet50": NoEncoderOptions,
    "resnet101": NoEncoderOptions,
    **{name: vit_options(name, *VIT_CONFIGS[name][:4]) for name in ("vit_s_16", "vit_b_16")},
    TIMM_PREFIX + "*": TimmOptions,
}
for _name, _model in ENCODER_OPTIONS.items():
    register_options("encoder", _name, _model)


def check_encoder_name(name) -> str:
    """``name`` if it names an encoder (a key of :data:`ENCODERS` or ``timm:MODEL``), else ConfigError."""
    encoder_options_model(name)
    return name


def build_encoder(name: str, weights=None, progress: bool = True, **options) -> Encoder:
    """Build the encoder called ``name`` (a key of :data:`ENCODERS`, or ``timm:MODEL``)."""
    check_encoder_name(name)
    options = validate(encoder_options_model(name), options, "model.encoder_options").model_dump(exclude_unset=True)
    try:
        if name.startswith(TIMM_PREFIX):
            return timm_encoder(name[len(TIMM_PREFIX) :], weights=weights, progress=progress, **options)
        return ENCODERS[name](weights=weights, progress=progress, **options)
    except TypeError as exc:  # timm's own keyword arguments are checked by timm
        raise ConfigError(f"model.encoder_options: {exc}") from exc


__all__ = [
    "ENCODERS",
    "Encoder",
    "StagedEncoder",
    "MTRNMobileNetV2",
    "MTRNInvertedResidual",
    "ViTEncoder",
    "TimmEncoder",
    "build_encoder",
    "check_encoder_name",
    "ENCODER_OPTIONS",
    "encoder_options_model",
]
