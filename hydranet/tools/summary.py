"""Model summary: parameters per part, multiply-adds at an input size, output shapes."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def _cpu_attention_flop(query, key, value, *args, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


# PyTorch's counter knows the CUDA attention kernels but not the CPU one a ViT runs here.
_CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flop}


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def summarize(model, height: int = 480, width: int = 640, batch: int = 1) -> dict:
    """Parameters, GMACs (multiply-adds, = FLOPs / 2 as torch counts them) and output shapes.

    Only convolutions and matrix products are counted (pooling, additions and
    interpolation are not), the convention of published MAC figures; a ViT's attention
    products (``q k^T`` and ``attn v``) are included.
    """
    was_training = model.training
    model.eval()
    x = torch.zeros(batch, 3, height, width)
    counter = FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION)
    with counter:
        outputs = model(x)
    model.train(was_training)
    flops = counter.get_total_flops()
    parts = {"encoder": model.encoder, "decoder": model.decoder}
    parts.update({f"head {name}": head for name, head in model.heads.items()})
    return {
        "input": [batch, 3, height, width],
        "parameters": count_parameters(model),
        "parameters_by_part": {k: count_parameters(v) for k, v in parts.items()},
        "gmacs": flops / 2 / 1e9,
        "outputs": {k: list(v.shape) for k, v in outputs.items()},
        "encoder": {"out_channels": list(model.encoder.out_channels), "strides": list(model.encoder.strides)},
    }


def format_summary(info: dict, config: dict) -> str:
    m = config["model"]
    lines = [
        f"HydraNet: encoder {m['encoder']}, decoder {m['decoder']} (width {m['width']})",
        f"encoder features: channels {info['encoder']['out_channels']}, strides {info['encoder']['strides']}",
        f"parameters: {info['parameters'] / 1e6:.2f} M",
    ]
    lines += [f"  {part:<20} {n / 1e6:8.3f} M" for part, n in info["parameters_by_part"].items()]
    n, c, h, w = info["input"]
    lines.append(f"multiply-adds at {n}x{c}x{h}x{w}: {info['gmacs']:.2f} GMACs ({2 * info['gmacs']:.2f} GFLOPs)")
    lines.append("outputs:")
    lines += [f"  {name:<20} {tuple(shape)}" for name, shape in info["outputs"].items()]
    return "\n".join(lines)
