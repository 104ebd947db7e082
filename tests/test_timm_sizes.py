"""timm backbones at any input size: ViT-style models get timm's dynamic image size and padding;
models that export at one size only say which flag does that."""

import pytest
import torch
import yaml
from support import tiny_config

import hydranet
from hydranet.cli import main
from hydranet.errors import ConfigError

pytest.importorskip("timm")
pytestmark = pytest.mark.usefixtures("one_thread")

TASKS = [{"name": "segm", "kind": "segmentation", "classes": 3}, {"name": "depth", "kind": "depth"}]


def _model(encoder, **options):
    cfg = tiny_config(encoder=encoder, tasks=TASKS, width=8)
    cfg["model"]["encoder_options"] = options
    torch.manual_seed(0)
    return hydranet.build_model(cfg).eval()


def test_vit_style_timm_model_takes_any_size():
    model = _model("timm:test_vit")  # a tiny ViT (patch 16), no pretrained weights
    assert model.encoder.dynamic_size
    with torch.no_grad():
        for h, w in ((64, 64), (50, 70), (33, 97)):  # 50, 70, 33, 97: not multiples of the patch
            out = model(torch.randn(1, 3, h, w))
            assert out["segm"].shape == (1, 3, h, w) and out["depth"].shape == (1, 1, h, w)
    # a model whose constructor has no such option is built without it; an explicit option is kept
    assert not _model("timm:test_convnext").encoder.dynamic_size
    fixed = _model("timm:test_vit", dynamic_img_size=False)
    assert not fixed.encoder.dynamic_size
    with pytest.raises(AssertionError, match="Input height"):  # timm's own size rule
        fixed(torch.randn(1, 3, 50, 70))


def test_a_model_that_exports_at_one_size_names_the_flag(tmp_path, monkeypatch):
    from hydranet.inference.export import export_onnx

    model = _model("timm:test_convnext")
    real = torch.onnx.export

    def refuse_dynamic(*args, **kwargs):  # what torch.export does with timm's ConvNeXt (seen here, ~1 min)
        if kwargs.get("dynamic_shapes"):
            raise RuntimeError("Constraints violated (height)!\nmore lines")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", refuse_dynamic)
    with pytest.raises(ConfigError, match=r"timm:test_convnext does not export .* --static --size 64x48"):
        export_onnx(model, tmp_path / "a.onnx", size=(48, 64), check=False)
    assert not list(tmp_path.iterdir())  # nothing half-written
    cfg = tmp_path / "convnext.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(encoder="timm:test_convnext", tasks=TASKS, width=8)))
    out = tmp_path / "b.onnx"
    assert main(["export", "--config", str(cfg), "--out", str(out), "--size", "64x48", "--static"]) == 0
    assert out.is_file()
