"""Every registered encoder through the same machinery: shapes, gradients, fast path, ONNX,
checkpoints, training steps; the ViT's reassembly, weights and options; timm backbones."""

import sys

import pytest
import torch
import torch.nn.functional as F
from support import ALL_KINDS_TASKS, tiny_config
from test_fast import assert_close_rel, randomize_batchnorm
from torch import nn

import hydranet
from hydranet.data import build_dataset
from hydranet.data.collate import make_collate
from hydranet.errors import ConfigError, WeightsUnavailableError
from hydranet.inference.fast import optimize_for_inference
from hydranet.losses import compute_losses
from hydranet.models import ENCODERS, build_encoder
from hydranet.models.encoders.vit import default_out_blocks
from hydranet.tools.summary import summarize

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_VIT = {"depth": 2, "width": 32, "heads": 2, "image_size": 64}
TINY_OPTIONS = {
    "mobilenet_v2": {"width_mult": 0.35},
    "mobilenet_v3_large": {"width_mult": 0.35},
    "vit_s_16": TINY_VIT,
    "vit_b_16": TINY_VIT,
}
# Small enough for the full matrix; the real ResNet-34/50/101 only get a forward pass.
FULL = [
    "mobilenet_v2",
    "mtrn_mobilenet_v2",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "resnet18",
    "vit_s_16",
    "vit_b_16",
    "timm:test_efficientnet",
    "timm:test_convnext",
]
HEAVY = ["resnet34", "resnet50", "resnet101"]
DECODERS = ["lightweight", "refinenet"]


def config(encoder, decoder="lightweight", tasks=None):
    cfg = tiny_config(decoder, encoder, tasks)
    cfg["model"]["encoder_options"] = dict(TINY_OPTIONS.get(encoder, {}))
    return cfg


def build(encoder, decoder="lightweight", tasks=None, seed=0):
    torch.manual_seed(seed)
    return randomize_batchnorm(hydranet.build_model(config(encoder, decoder, tasks)))


def test_every_registered_encoder_is_tested():
    assert set(ENCODERS) == {e for e in FULL + HEAVY if not e.startswith("timm:")}


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("encoder", FULL)
def test_shapes_gradients_and_fast_path(encoder, decoder):
    model = build(encoder, decoder)
    x = torch.randn(2, 3, 97, 130)
    out = model(x)
    expected = {
        "segm": (2, 5, 97, 130),
        "depth": (2, 1, 97, 130),
        "normals": (2, 3, 97, 130),
        "maker": (2, 3),
        "diameter": (2, 2),
    }
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    sum(v.square().mean() for v in out.values()).backward()
    params = list(model.encoder.parameters())
    assert all(p.grad is not None for p in params)
    assert params[0].grad.abs().sum() > 0  # the first layer: gradients reach the input end

    model.eval()
    fast = optimize_for_inference(model)
    with torch.no_grad():
        ref = model(x)
    assert_close_rel(fast(x), ref, tol=1e-4)
    plain_bns = sum(type(m) is nn.BatchNorm2d for m in model.modules())
    assert fast.report["folded_batchnorms"] == plain_bns  # every plain BatchNorm follows a conv here


@pytest.mark.parametrize("encoder", HEAVY)
def test_deep_resnets_forward(encoder):
    model = build(encoder).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert tuple(out["segm"].shape) == (1, 5, 64, 64) and tuple(out["diameter"].shape) == (1, 2)
    assert model.encoder.strides == (4, 8, 16, 32)


@pytest.mark.parametrize("encoder", ["vit_s_16", "timm:test_efficientnet", "mobilenet_v3_large"])
def test_checkpoint_round_trip(encoder, tmp_path):
    model = build(encoder).eval()
    hydranet.save_model(model, tmp_path / "m.pt")
    loaded = hydranet.load_model(tmp_path / "m.pt")
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert all(torch.equal(a[k], b[k]) for k in a)


SYNTHETIC_TASKS = hydranet.load_config("synthetic")["tasks"]


@pytest.mark.parametrize("encoder", ["vit_s_16", "timm:test_efficientnet"])
def test_training_steps_lower_the_loss_on_synthetic_scenes(encoder):
    model = build(encoder, tasks=SYNTHETIC_TASKS)
    specs = model.tasks
    data = build_dataset({"type": "synthetic", "num_samples": 8, "size": [64, 64], "seed": 0}, specs, False)
    batch = make_collate(specs)([data[i] for i in range(8)])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)

    def loss():
        return sum(compute_losses(model(batch["image"]), batch, specs).values())

    first = float(loss().detach())
    for _ in range(8):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert float(loss().detach()) < 0.8 * first


# --- ONNX -------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoder, decoder", [("vit_s_16", "lightweight"), ("timm:test_efficientnet", "refinenet")])
def test_onnx_parity_at_two_sizes(encoder, decoder, tmp_path):
    from hydranet.inference.export import export_onnx

    tasks = [ALL_KINDS_TASKS[0], ALL_KINDS_TASKS[3]]  # one dense, one image-level head
    model = build(encoder, decoder, tasks).eval()
    report = export_onnx(model, tmp_path / "m.onnx", size=(64, 64), check_sizes=[(64, 64), (97, 130), (32, 33)])
    assert [c["size"] for c in report["check"]] == ["64x64", "130x97", "33x32"]
    assert all(c["max_rel"] < 1e-4 for c in report["check"]), report["check"]


# --- the ViT ------------------------------------------------------------------------------------


def tiny_vit(**options):
    torch.manual_seed(0)
    return build_encoder("vit_s_16", **{**TINY_VIT, **options}).eval()


def test_dpt_blocks_and_feature_info():
    assert default_out_blocks(12) == (2, 5, 8, 11) and default_out_blocks(24) == (5, 11, 17, 23)
    assert default_out_blocks(2) == (0, 0, 1, 1)
    enc = build_encoder("vit_b_16")
    assert enc.out_channels == (96, 192, 384, 768) and enc.strides == (4, 8, 16, 32)
    assert enc.global_channels == 768 and enc.pos_embedding.shape == (1, 197, 768)


def test_padding_and_cropping_match_a_zero_padded_input():
    """97x130 is padded to the patch grid with zeros, and every map is cropped back to
    ceil(size / stride): the maps are the top-left part of those of the padded input."""
    enc = tiny_vit()
    x = torch.randn(1, 3, 97, 130)
    with torch.no_grad():
        maps, pooled = enc.encode(x)
        padded_maps, padded_pooled = enc.encode(F.pad(x, (0, 14, 0, 15)))  # 112x144: 7x9 patches
    assert [tuple(m.shape[-2:]) for m in maps] == [(25, 33), (13, 17), (7, 9), (4, 5)]
    for m, p in zip(maps, padded_maps):
        assert torch.allclose(m, p[..., : m.shape[-2], : m.shape[-1]], atol=1e-5)
    assert torch.allclose(pooled, padded_pooled, atol=1e-5)


def test_position_embeddings_at_the_native_grid_are_the_stored_ones():
    enc = tiny_vit()
    with torch.no_grad():
        assert torch.allclose(enc._positions(4, 4), enc.pos_embedding, atol=1e-6)
        assert enc._positions(7, 9).shape == (1, 1 + 63, 32)


def test_global_feature_class_token_or_mean_and_image_level_only_skips_the_maps():
    token, mean = tiny_vit(), tiny_vit(global_pool="mean")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        maps, g = token.encode(x)
        none, g2 = token.encode(x, dense=False)
        _, g3 = mean.encode(x)
    assert none == [] and torch.equal(g, g2) and g.shape == (2, 32, 1, 1)
    assert not torch.allclose(g, g3)
    # by hand: the final LayerNorm of the tokens, then the class token or the mean patch token
    with torch.no_grad():
        t = (
            torch.cat([token.class_token.expand(2, -1, -1), token.patch_embed(x).flatten(2).transpose(1, 2)], 1)
            + token.pos_embedding
        )
        for block in token.blocks:
            t = block(t)
        t = token.norm(t)
    assert torch.allclose(g[:, :, 0, 0], t[:, 0], atol=1e-5)
    assert torch.allclose(g3[:, :, 0, 0], t[:, 1:].mean(1), atol=1e-5)


def test_torchvision_vit_weights_load_and_reproduce_its_class_token(tmp_path):
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(1)
    tv = VisionTransformer(64, 16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=128).eval()
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    enc = build_encoder("vit_s_16", weights=str(tmp_path / "tv.pth"), **TINY_VIT).eval()
    tv.heads = nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(enc.encode(x, dense=False)[1][:, :, 0, 0], tv(x), atol=1e-5)


def test_timm_vit_weights_load_and_reproduce_its_class_token(tmp_path):
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(2)
    ref = VisionTransformer(img_size=64, patch_size=16, embed_dim=32, depth=2, num_heads=2, num_classes=0).eval()
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    enc = build_encoder("vit_s_16", weights=str(tmp_path / "timm.pth"), **TINY_VIT).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(enc.encode(x, dense=False)[1][:, :, 0, 0], ref(x), atol=1e-5)
    with pytest.raises(WeightsUnavailableError, match="timm.pth"):
        build_encoder("vit_s_16", weights=str(tmp_path / "timm.pth"), **{**TINY_VIT, "width": 64})


@pytest.mark.parametrize(
    "options, field",
    [
        ({"global_pool": "max"}, "global_pool"),
        ({"heads": 3}, "heads"),
        ({"out_blocks": [0, 1]}, "out_blocks"),
        ({"readout": "cat"}, "readout"),
        ({"depthh": 2}, "encoder_options"),
    ],
)
def test_vit_option_errors_name_the_field(options, field):
    with pytest.raises(ConfigError, match=field):
        build_encoder("vit_s_16", **{**TINY_VIT, **options})


def test_readout_add_puts_the_class_token_into_the_maps():
    ignore, add = tiny_vit(), tiny_vit(readout="add")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = ignore(x), add(x)
    assert all(p.shape == q.shape for p, q in zip(a, b)) and not torch.allclose(a[2], b[2])


def test_summary_counts_the_attention_products():
    """Image-level tasks only, 64x64: 16 patches + the class token, by hand."""
    tasks = [ALL_KINDS_TASKS[3], ALL_KINDS_TASKS[4]]
    model = build("vit_s_16", tasks=tasks)
    t, d, depth = 17, 32, 2
    block = t * d * 3 * d + 2 * t * t * d + t * d * d + 2 * t * d * 4 * d  # qkv, q k^T and attn v, proj, MLP
    macs = 16 * (3 * 16 * 16) * d + depth * block + d * 3 + d * 2  # patch embedding, blocks, two heads
    info = summarize(model, 64, 64)
    assert info["gmacs"] * 1e9 == pytest.approx(macs)
    assert info["outputs"] == {"maker": [1, 3], "diameter": [1, 2]}


def test_vit_ranks_gradnorms_shared_layer():
    enc = tiny_vit()
    assert enc.shared_parameters()[0] is enc.blocks[-1].mlp.fc2.weight


# --- timm backbones -------------------------------------------------------------------------------


def test_timm_features_and_names():
    enc = build_encoder("timm:test_convnext")
    assert enc.strides == (4, 8, 16, 32) and len(enc.out_channels) == 4
    with pytest.raises(ConfigError, match="timm has no model 'convnext_tinyy'"):
        build_encoder("timm:convnext_tinyy")
    for bad in ("timm:", "vgg"):
        with pytest.raises(ConfigError, match="timm:MODEL"):
            hydranet.load_config({"model": {"encoder": bad}, "tasks": [ALL_KINDS_TASKS[0]]})


def test_timm_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ConfigError, match=r"hydranet\[timm\]"):
        build_encoder("timm:test_efficientnet")


def test_timm_weights_local_file_and_offline_error(tmp_path, monkeypatch):
    import timm

    torch.manual_seed(3)
    net = timm.create_model("test_efficientnet")
    torch.save(net.state_dict(), tmp_path / "w.pth")
    enc = build_encoder("timm:test_efficientnet", weights=str(tmp_path / "w.pth"))
    ref = net.state_dict()
    loaded = enc.model.state_dict()
    assert loaded and all(torch.equal(v, ref[k]) for k, v in loaded.items())
    with pytest.raises(WeightsUnavailableError, match=r"model.encoder_weights: the file .*missing.pth' does not exist"):
        build_encoder("timm:test_efficientnet", weights=str(tmp_path / "missing.pth"))

    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("Name or service not known")
        return real(*args, **kwargs)

    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(WeightsUnavailableError, match="--encoder-weights PATH.*pretrained_cfg_overlay"):
        build_encoder("timm:test_efficientnet", weights="imagenet")
    with pytest.raises(WeightsUnavailableError, match="timm"):
        build_encoder("vit_s_16", weights="imagenet")  # ViT-S/16's ImageNet weights come from timm (DeiT-S)


# --- shipped config and the command line -------------------------------------------------------------


def test_summary_of_the_vit_config_and_of_a_set_encoder(capsys):
    from hydranet.cli import main

    assert main(["summary", "--config", "json_targets_vit", "--size", "224x224"]) == 0
    text = capsys.readouterr().out
    assert "encoder vit_b_16" in text and "parameters:" in text
    # ViT-B/16 at 224: 17.56 GMACs in the 12 blocks and the patch embedding, plus the four heads
    assert "multiply-adds at 1x3x224x224: 17.5" in text
    assert main(["summary", "--set", "model.encoder=vit_b_16", "--size", "96x64"]) == 0
    text = capsys.readouterr().out
    assert "encoder vit_b_16" in text and "channels [96, 192, 384, 768], strides [4, 8, 16, 32]" in text
    assert "GMACs" in text
    assert main(["summary", "--set", "model.encoder=vgg"]) == 2
    assert "model.encoder" in capsys.readouterr().err


def test_legacy_trainer_flags_with_the_vit_config(tmp_path):
    import json

    import cv2
    import numpy as np

    from hydranet.checkpoint import read_checkpoint
    from hydranet.cli import main

    rng = np.random.default_rng(0)
    records = []
    for i in range(8):
        cv2.imwrite(str(tmp_path / f"{i}.png"), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
        records.append(
            {
                "image": f"{i}.png",
                "company": ["acme", "zenith"][i % 2],
                "model": i % 3,
                "diameter": 4.0 + 0.1 * i,
                "length": 30.0 + i,
            }
        )
    (tmp_path / "train.json").write_text(json.dumps(records))
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--config",
            "json_targets_vit",
            "--train_json",
            str(tmp_path / "train.json"),
            "--use_uncertainty_weighting",
            "true",
            "--gradient_normalization",
            "true",
            "--initial_log_vars",
            "0,0,0,0",
            "--steps",
            "2",
            "--out",
            str(out),
            "--no-progress",
            "--set",
            "model.encoder_weights=null",
            "--set",
            f"model.encoder_options={json.dumps(TINY_VIT)}",
            "--set",
            "data.val=null",
            "--set",
            "train.batch_size=4",
            "--set",
            "train.warmup_steps=0",
            "--set",
            "data.train.transforms={size: [48, 48]}",
            "--set",
            "train.plots=false",
            "--set",
            "train.tensorboard=false",
        ]
    )
    assert code == 0
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["step"] == 2 and ckpt["config"]["model"]["encoder"] == "vit_b_16"
    assert ckpt["config"]["loss"]["weighting"] == "uncertainty" and ckpt["config"]["loss"]["gradient_normalization"]
    assert [t["name"] for t in ckpt["config"]["tasks"]] == ["company", "model", "diameter", "length"]
    assert len(ckpt["weighting"]) == 4
