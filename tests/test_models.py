import pytest
import torch
from support import ALL_KINDS_TASKS, tiny_config

import hydranet
from hydranet.config import load_config, save_config
from hydranet.errors import ConfigError, WeightsUnavailableError
from hydranet.models import build_encoder
from hydranet.tools.summary import summarize

ENCODERS = ["mobilenet_v2", "mtrn_mobilenet_v2", "resnet18"]


@pytest.mark.parametrize("decoder", ["lightweight", "refinenet"])
@pytest.mark.parametrize("encoder", ENCODERS)
def test_output_shapes_every_kind_odd_size(decoder, encoder):
    torch.manual_seed(0)
    model = hydranet.build_model(tiny_config(decoder, encoder)).eval()
    x = torch.randn(2, 3, 97, 130)
    out = model(x)
    assert list(out) == [t["name"] for t in ALL_KINDS_TASKS]
    assert out["segm"].shape == (2, 5, 97, 130)
    assert out["depth"].shape == (2, 1, 97, 130)
    assert out["normals"].shape == (2, 3, 97, 130)
    assert out["maker"].shape == (2, 3)
    assert out["diameter"].shape == (2, 2)
    assert all(v.dtype == torch.float32 for v in out.values())
    low = model(x, upsample=False)
    # Stride-4 map of a 97x130 input: ceil(97/4) x ceil(130/4).
    assert low["segm"].shape == (2, 5, 25, 33)
    assert low["maker"].shape == (2, 3)


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["lightweight", "refinenet"])
def test_each_task_loss_reaches_its_head_and_the_encoder_only(decoder):
    model = hydranet.build_model(tiny_config(decoder))
    x = torch.randn(2, 3, 64, 64)
    first_conv = next(model.encoder.parameters())
    for task in ALL_KINDS_TASKS:
        model.zero_grad(set_to_none=True)
        out = model(x)
        out[task["name"]].square().mean().backward()
        assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
        for name, head in model.heads.items():
            grads = [p.grad for p in head.parameters()]
            if name == task["name"]:
                assert all(g is not None and g.abs().sum() > 0 for g in grads), name
            else:
                assert all(g is None for g in grads), f"{task['name']} leaked into head {name}"
        decoder_grads = [p.grad for p in model.decoder.parameters()]
        if task["kind"] in ("segmentation", "depth", "normals"):
            assert all(g is not None for g in decoder_grads)
        else:  # image-level heads read the encoder only
            assert all(g is None for g in decoder_grads)


def test_encoder_feature_info():
    enc = build_encoder("mobilenet_v2")
    assert enc.out_channels == (24, 32, 64, 96, 160, 320)
    assert enc.strides == (4, 8, 16, 16, 32, 32)
    feats = enc(torch.randn(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == list(enc.out_channels)
    assert [64 // f.shape[2] for f in feats] == list(enc.strides)
    res = build_encoder("resnet18")
    assert res.out_channels == (64, 128, 256, 512) and res.strides == (4, 8, 16, 32)
    assert build_encoder("resnet50").out_channels == (256, 512, 1024, 2048)


def test_config_round_trip(tmp_path):
    cfg = tiny_config("refinenet")
    path = tmp_path / "model.yaml"
    save_config(load_config(cfg), path)
    torch.manual_seed(0)
    a = hydranet.build_model(cfg).eval()
    b = hydranet.build_model(str(path)).eval()
    assert a.config == b.config
    sa, sb = a.state_dict(), b.state_dict()
    assert {k: v.shape for k, v in sa.items()} == {k: v.shape for k, v in sb.items()}
    b.load_state_dict(sa)
    x = torch.randn(1, 3, 64, 64)
    for k, v in a(x).items():
        torch.testing.assert_close(b(x)[k], v)


@pytest.mark.parametrize(
    "task, field",
    [
        ({"name": "x", "kind": "panoptic"}, "tasks[0].kind"),
        ({"name": "x", "kind": "segmentation", "classes": 0}, "tasks[0].classes"),
        ({"name": "x", "kind": "classification"}, "tasks[0].classes"),
        ({"kind": "depth"}, "tasks[0].name"),
        ({"name": "x", "kind": "regression", "outputs": -1}, "tasks[0].outputs"),
        ({"name": "x", "kind": "depth", "colour": 1}, "tasks[0]"),
    ],
)
def test_bad_task_raises_naming_the_field(task, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        hydranet.build_model({"tasks": [task]})


@pytest.mark.parametrize(
    "model, field",
    [
        ({"encoder": "vgg"}, "model.encoder"),
        ({"decoder": "unet"}, "model.decoder"),
        ({"width": 0}, "model.width"),
        ({"depth_head": 3}, "model"),
    ],
)
def test_bad_model_section_raises_naming_the_field(model, field):
    with pytest.raises(ConfigError, match=field):
        hydranet.build_model({"model": model, "tasks": [{"name": "d", "kind": "depth"}]})


def test_duplicate_task_names_and_missing_tasks():
    with pytest.raises(ConfigError, match=r"tasks\[1\].name"):
        load_config({"tasks": [{"name": "d", "kind": "depth"}, {"name": "d", "kind": "normals"}]})
    with pytest.raises(ConfigError, match="tasks"):
        load_config({"model": {}})


def test_encoder_weights_from_local_file(tmp_path):
    import torchvision

    reference = torchvision.models.mobilenet_v2(weights=None)
    path = tmp_path / "mnv2.pth"
    torch.save(reference.state_dict(), path)
    enc = build_encoder("mobilenet_v2", weights=str(path))
    torch.testing.assert_close(enc.stages[0][0][0].weight, reference.features[0][0].weight)
    torch.testing.assert_close(enc.stages[5][0].conv[2].weight, reference.features[17].conv[2].weight)
    with pytest.raises(WeightsUnavailableError, match=r"model.encoder_weights: the file .*missing.pth' does not exist"):
        build_encoder("mobilenet_v2", weights=str(tmp_path / "missing.pth"))
    torch.save({"bogus.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(WeightsUnavailableError, match="does not match"):
        build_encoder("mobilenet_v2", weights=str(tmp_path / "wrong.pth"))


def test_imagenet_weights_offline_error_says_how_to_supply(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(WeightsUnavailableError, match="--encoder-weights"):
        build_encoder("mobilenet_v2", weights="imagenet")


def test_summary_reports_published_cost():
    cfg = {
        "model": {"encoder": "mtrn_mobilenet_v2"},
        "tasks": [{"name": "segm", "kind": "segmentation", "classes": 40}, {"name": "depth", "kind": "depth"}],
    }
    info = summarize(hydranet.build_model(cfg), height=480, width=640)
    # Multi-Task RefineNet (40 classes + depth): 3.07 M parameters, 5.94 GMACs at 640x480.
    assert abs(info["parameters"] / 1e6 - 3.07) < 0.01
    assert abs(info["gmacs"] - 5.94) < 0.05
    assert info["outputs"]["segm"] == [1, 40, 480, 640]


def test_summary_cli(tmp_path, capsys):
    from hydranet.cli import main

    out = tmp_path / "s.json"
    assert main(["summary", "--size", "160x96", "--json", str(out)]) == 0
    assert "GMACs" in capsys.readouterr().out
    import json

    assert json.loads(out.read_text())["outputs"]["segm"] == [1, 40, 96, 160]
    assert main(["summary", "--config", str(tmp_path / "nope.yaml")]) == 2
