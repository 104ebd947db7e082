"""Vision Transformers (Dosovitskiy et al. 2021) as encoders, with DPT reassembly for dense tasks.

Tokens of four transformer blocks become maps at strides 4, 8, 16 and 32 as in DPT
(Ranftl et al. 2021): the patch tokens are laid out on the patch grid (stride 16), projected
by a 1x1 convolution and resampled by a transposed convolution (strides 4 and 8), not at all
(16) or a strided 3x3 convolution (32). Image-level heads read the class token after the final
LayerNorm (``global_pool: token``) or the mean of the patch tokens (``global_pool: mean``).

Any input size works: the input is padded (zeros, i.e. the mean colour after ImageNet
normalisation) to a multiple of the patch size, the position embeddings are interpolated
(bicubic, as timm does) to the patch grid, and every map is cropped back to ``ceil(H / stride)`` x
``ceil(W / stride)``, the size a convolutional encoder gives.

Parameter names follow timm's ``VisionTransformer`` (``blocks.N.attn.qkv`` ...), so timm
state dicts load as they are; torchvision's are renamed on loading.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import WeightsUnavailableError
from .base import Encoder, load_local_state_dict, load_matching, torchvision_weights
from .timm_backbones import create_timm_model


class Attention(nn.Module):
    """Multi-head self-attention with one qkv projection (``F.scaled_dot_product_attention``)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _reassemble(dim: int, channels: int, patch: int, stride: int) -> nn.Sequential:
    """1x1 projection of the token map, then resampling from the patch stride to ``stride``."""
    layers = [nn.Conv2d(dim, channels, 1)]
    if stride < patch:
        f = patch // stride
        layers.append(nn.ConvTranspose2d(channels, channels, f, stride=f))
    elif stride > patch:
        layers.append(nn.Conv2d(channels, channels, 3, stride=stride // patch, padding=1))
    return nn.Sequential(*layers)


def _crop(x: torch.Tensor, h, w) -> torch.Tensor:
    """``x[..., :h, :w]``, written as index selection: ``torch.export`` cannot prove that the
    slice bounds hold for every input size, index selection needs no such proof."""
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def default_out_blocks(depth: int) -> tuple[int, ...]:
    """The blocks DPT reads: the last of each quarter of the depth (2, 5, 8, 11 for 12 blocks)."""
    return tuple(max(0, math.ceil(depth * q / 4) - 1) for q in (1, 2, 3, 4))


class ViTEncoder(Encoder):
    """A ViT returning four DPT-reassembled maps (strides 4, 8, 16, 32) and a global feature.

    Args:
        patch_size: 8, 16 or 32 (the stride of the token grid).
        depth, width, heads, mlp_dim: blocks, token width, attention heads, MLP hidden size.
        grid: side of the square position-embedding grid (``image_size // patch_size``).
        out_blocks: the four blocks (0-based) whose tokens become the maps (default: DPT's).
        channels: channels of the four maps (default ``width/8, width/4, width/2, width``).
        global_pool: ``token`` (class token) or ``mean`` (mean patch token) for image-level heads.
        readout: ``ignore`` the class token in the maps, or ``add`` it to every patch token.
    """

    STRIDES = (4, 8, 16, 32)

    def __init__(
        self,
        patch_size: int,
        depth: int,
        width: int,
        heads: int,
        mlp_dim: int,
        grid: int,
        out_blocks: Optional[Sequence[int]] = None,
        channels: Optional[Sequence[int]] = None,
        global_pool: str = "token",
        readout: str = "ignore",
        dropout: float = 0.0,
    ):
        # The values are checked by the encoder's options schema (hydranet.models.encoders.vit_options)
        # when they come from a config or build_encoder; here they are taken as given.
        out_blocks = tuple(out_blocks) if out_blocks is not None else default_out_blocks(depth)
        channels = tuple(channels) if channels is not None else (width // 8, width // 4, width // 2, width)
        super().__init__(channels, self.STRIDES, global_channels=width)
        self.patch_size = patch_size
        self.global_pool = global_pool
        self.readout = readout
        self.out_blocks = out_blocks
        self.patch_embed = nn.Conv2d(3, width, patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embedding = nn.Parameter(torch.randn(1, 1 + grid * grid, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_dim, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.reassemble = nn.ModuleList(_reassemble(width, c, patch_size, s) for c, s in zip(channels, self.STRIDES))

    def _positions(self, gh, gw) -> torch.Tensor:
        """The position embeddings (class token first) for a ``gh x gw`` patch grid."""
        pos = self.pos_embedding
        n, d = pos.shape[1] - 1, pos.shape[2]
        side = math.isqrt(n)
        grid = pos[:, 1:].reshape(1, side, side, d).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        return torch.cat([pos[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)

    def encode(self, x: torch.Tensor, dense: bool = True) -> tuple[list[torch.Tensor], torch.Tensor]:
        n, _, h, w = x.shape
        p = self.patch_size
        # p - 1 zero rows and columns: the patch grid is ceil(H / p) x ceil(W / p) (a constant pad
        # keeps the sizes simple enough for torch.export to reason about).
        x = self.patch_embed(F.pad(x, (0, p - 1, 0, p - 1)))
        gh, gw = x.shape[-2], x.shape[-1]
        tokens = torch.cat([self.class_token.expand(n, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        # Expanded, not broadcast: a broadcast over the batch makes torch.export specialise batch 1.
        tokens = tokens + self._positions(gh, gw).expand(n, -1, -1)
        taps = {}
        for i, block in enumerate(self.blocks):
            tokens = block(tokens)
            if dense and i in self.out_blocks:
                taps[i] = tokens
        final = self.norm(tokens)
        pooled = final[:, 0] if self.global_pool == "token" else final[:, 1:].mean(dim=1)
        pooled = pooled[:, :, None, None]
        if not dense:
            return [], pooled
        features = []
        for block, reassemble, stride in zip(self.out_blocks, self.reassemble, self.STRIDES):
            t = taps[block]
            patches = t[:, 1:] + t[:, :1] if self.readout == "add" else t[:, 1:]
            grid = patches.unflatten(1, (gh, gw)).permute(0, 3, 1, 2).contiguous()
            f = reassemble(grid)
            # ceil(ceil(H / p) / k) == ceil(H / (p k)): only the upsampled maps are larger
            # (h + s - 1) // s, not -(-h // s): exported integer division truncates towards zero
            features.append(_crop(f, (h + stride - 1) // stride, (w + stride - 1) // stride) if stride < p else f)
        return features, pooled

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.encode(x)[0]

    def shared_parameters(self) -> list[nn.Parameter]:
        return [self.blocks[-1].mlp.fc2.weight]

    def load_weights(self, sd: dict, source: str) -> None:
        """Load a timm- or torchvision-style ViT state dict (classifier heads are ignored)."""
        sd = {
            k: v
            for k, v in (from_torchvision(sd) if "conv_proj.weight" in sd else sd).items()
            if not k.startswith(("head.", "heads.", "fc_norm.")) and not k.startswith("reassemble.")
        }
        if "patch_embed.proj.weight" in sd:
            sd["patch_embed.weight"] = sd.pop("patch_embed.proj.weight")
            sd["patch_embed.bias"] = sd.pop("patch_embed.proj.bias")
        for old, new in (("cls_token", "class_token"), ("pos_embed", "pos_embedding")):
            if old in sd:
                sd[new] = sd.pop(old)
        pos = sd.get("pos_embedding")
        if (
            pos is not None
            and pos.shape != self.pos_embedding.shape
            and pos.dim() == 3
            and math.isqrt(pos.shape[1] - 1) ** 2 == pos.shape[1] - 1
        ):
            self.pos_embedding = nn.Parameter(torch.zeros_like(pos))  # the weights' own grid
        missing = [k for k in self.state_dict() if k not in sd and not k.startswith("reassemble.")]
        if missing:
            raise WeightsUnavailableError(
                f"{source!r} is not a ViT state dict of this shape: missing keys {missing[:5]}"
            )
        load_matching(self, {**self.state_dict(), **sd}, source, "this ViT")


def from_torchvision(sd: dict) -> dict:
    """torchvision ``VisionTransformer`` parameter names -> this module's (timm's) names."""
    out = {}
    for key, value in sd.items():
        k = key.replace("conv_proj.", "patch_embed.").replace("encoder.ln.", "norm.")
        k = k.replace("encoder.pos_embedding", "pos_embedding").replace("encoder.layers.encoder_layer_", "blocks.")
        k = (
            k.replace(".ln_1.", ".norm1.")
            .replace(".ln_2.", ".norm2.")
            .replace(".self_attention.in_proj_weight", ".attn.qkv.weight")
            .replace(".self_attention.in_proj_bias", ".attn.qkv.bias")
            .replace(".self_attention.out_proj.", ".attn.proj.")
            .replace(".mlp.0.", ".mlp.fc1.")
            .replace(".mlp.3.", ".mlp.fc2.")
            .replace(".mlp.linear_1.", ".mlp.fc1.")
            .replace(".mlp.linear_2.", ".mlp.fc2.")
        )
        out[k] = value
    return out


# name: (patch, depth, width, heads, source of ImageNet weights)
VIT_CONFIGS = {
    "vit_s_16": (16, 12, 384, 6, "timm:deit_small_patch16_224.fb_in1k"),
    "vit_b_16": (16, 12, 768, 12, "torchvision:vit_b_16"),
}


def _imagenet_state_dict(source: str, progress: bool) -> dict:
    library, name = source.split(":", 1)
    if library == "torchvision":
        from torchvision import models as tvm

        return torchvision_weights(tvm.vit_b_16, tvm.ViT_B_16_Weights, "imagenet", progress).state_dict()

    return create_timm_model(name, weights="imagenet").state_dict()


def _vit(name: str):
    patch, depth0, width0, heads0, source = VIT_CONFIGS[name]

    def build(
        weights=None,
        progress: bool = True,
        image_size: int = 224,
        depth: Optional[int] = None,
        width: Optional[int] = None,
        heads: Optional[int] = None,
        mlp_dim: Optional[int] = None,
        out_blocks: Optional[Sequence[int]] = None,
        channels: Optional[Sequence[int]] = None,
        global_pool: str = "token",
        readout: str = "ignore",
        dropout: float = 0.0,
    ) -> Encoder:
        width = width or width0
        enc = ViTEncoder(
            patch,
            depth or depth0,
            width,
            heads or heads0,
            mlp_dim or 4 * width,
            int(image_size) // patch,
            out_blocks,
            channels,
            global_pool,
            readout,
            dropout,
        )
        if weights == "imagenet":
            enc.load_weights(_imagenet_state_dict(source, progress), f"{source} ImageNet weights")
        elif weights is not None:
            enc.load_weights(load_local_state_dict(str(weights)), str(weights))
        return enc

    build.__name__ = name
    build.__doc__ = (
        f"ViT-{'S' if 's_' in name else 'B'}/{patch} with DPT reassembly; ImageNet weights from "
        f"{source.replace(':', ' ')}."
    )
    return build


vit_s_16 = _vit("vit_s_16")
vit_b_16 = _vit("vit_b_16")
