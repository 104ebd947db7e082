"""Encoders: image -> list of feature maps, from high to low resolution (see :mod:`.base`).

``ENCODERS`` maps a config name to a builder ``fn(weights=None, progress=True, **options)``
(one module per family); ``timm:NAME`` names any timm backbone (:mod:`.timm_backbones`).
``weights`` is ``None`` (random init), ``"imagenet"`` (the providing library's weights
mechanism, which needs network or its cache) or the path of a local state-dict file.
"""

from __future__ import annotations

from typing import Callable

from ...errors import ConfigError
from .base import Encoder, StagedEncoder
from .efficientnet import efficientnet_b0
from .mobilenet import MTRNInvertedResidual, MTRNMobileNetV2, mobilenet_v2, mobilenet_v3_large, mtrn_mobilenet_v2
from .resnet import resnet18, resnet34, resnet50, resnet101
from .timm_backbones import PREFIX as TIMM_PREFIX
from .timm_backbones import TimmEncoder, timm_encoder
from .vit import ViTEncoder, vit_b_16, vit_s_16

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


def check_encoder_name(name) -> str:
    """``name`` if it names an encoder (a key of :data:`ENCODERS` or ``timm:MODEL``), else ConfigError."""
    if isinstance(name, str) and (name in ENCODERS or (name.startswith(TIMM_PREFIX) and len(name) > len(TIMM_PREFIX))):
        return name
    raise ConfigError(
        f"model.encoder: unknown encoder {name!r}; valid: {', '.join(ENCODERS)}, "
        f"or {TIMM_PREFIX}MODEL for any timm backbone (pip install 'hydranet[timm]')"
    )


def build_encoder(name: str, weights=None, progress: bool = True, **options) -> Encoder:
    """Build the encoder called ``name`` (a key of :data:`ENCODERS`, or ``timm:MODEL``)."""
    check_encoder_name(name)
    try:
        if name.startswith(TIMM_PREFIX):
            return timm_encoder(name[len(TIMM_PREFIX) :], weights=weights, progress=progress, **options)
        return ENCODERS[name](weights=weights, progress=progress, **options)
    except TypeError as exc:
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
]
