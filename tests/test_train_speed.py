"""Training speed options (train.channels_last, train.compile) and ``hydranet bench --train``."""

import json

import pytest
import torch
import yaml

from hydranet.cli import main
from hydranet.config import load_config
from hydranet.errors import ConfigError
from hydranet.training import Trainer, apply_overrides
from hydranet.training.settings import training_settings

pytestmark = pytest.mark.usefixtures("one_thread")

# A tiny network on 32 synthetic 48x48 scenes; SGD so that rounding differences stay small
# (Adam divides them by tiny second moments).
TINY = [
    "model.encoder_options={width_mult: 0.35}",
    "model.width=16",
    "data.train.size=[48,48]",
    "data.train.num_samples=32",
    "data.train.transforms={size: [48, 48]}",
    "train.batch_size=4",
    "train.optimizer=sgd",
    "train.lr=0.01",
    "train.warmup_steps=0",
    "train.plots=false",
    "train.tensorboard=false",
    "train.channels_last=false",  # the NCHW reference (the CPU default is the decoder in channels_last)
]


def update(tmp_path, name, steps, *extra):
    """The parameter change (a flat vector) of ``steps`` trainer steps from the seeded initialisation."""
    cfg = load_config(apply_overrides(load_config("synthetic"), TINY + [f"train.steps={steps}"] + list(extra)))
    cfg["data"].pop("val")
    trainer = Trainer(cfg, tmp_path / name, progress=False)
    keys = [k for k, v in trainer.model.state_dict().items() if v.is_floating_point() and "running" not in k]
    initial = {k: trainer.model.state_dict()[k].detach().clone() for k in keys}
    try:
        trainer.fit()
    finally:
        trainer.close()
    final = trainer.model.state_dict()
    return torch.cat([(final[k] - initial[k]).flatten() for k in keys]), trainer


def relative_difference(a, b):
    return float((a - b).norm() / a.norm())


@pytest.fixture(scope="module")
def default_update(tmp_path_factory):
    return update(tmp_path_factory.mktemp("default"), "run", 1)[0]


def test_channels_last_trains_the_same_model(tmp_path, default_update):
    other, trainer = update(tmp_path, "cl", 1, "train.channels_last=true")
    assert trainer.model.heads["segm"][2].weight.is_contiguous(memory_format=torch.channels_last)
    # Another seed gives another model: the comparison below can fail.
    assert relative_difference(default_update, update(tmp_path, "seed", 1, "train.seed=1")[0]) > 0.5
    # One step of this tiny network (train-mode BatchNorm over 2x2 maps at the deepest stage)
    # amplifies the layout's different summation order to about 4% of the update (the forward
    # pass agrees to 1e-5 relative); the update points the same way.
    assert relative_difference(default_update, other) < 0.1
    assert float(torch.nn.functional.cosine_similarity(default_update, other, 0)) > 0.99


def test_decoder_channels_last_keeps_the_nchw_accuracy(tmp_path, default_update):
    """The CPU default (``auto``): decoder and heads in channels_last, the encoder (with its
    BatchNorm layers, whose channels_last training kernel is the inaccurate part) in NCHW."""
    other, trainer = update(tmp_path, "dec", 1, "train.channels_last=auto")
    assert trainer.layout == "decoder" and not trainer.channels_last
    assert trainer.model.heads["segm"][2].weight.is_contiguous(memory_format=torch.channels_last)
    # (a 1x1 or depthwise weight is contiguous in both layouts; the first 3x3 convolution's is not)
    first = next(m for m in trainer.model.encoder.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.weight.is_contiguous() and not first.weight.is_contiguous(memory_format=torch.channels_last)
    # as close to the NCHW step as another summation order (a thread count) gets; the whole
    # model in channels_last is 4% away (above)
    assert relative_difference(default_update, other) < 1e-4


def test_memory_layout_per_device():
    from hydranet.training.trainer import memory_layout

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert memory_layout("auto", cpu) == "decoder" and memory_layout("auto", cuda) == "none"
    assert [memory_layout(v, cpu) for v in (True, False, "decoder")] == ["all", "none", "decoder"]


@pytest.mark.slow  # torch.compile of the forward and backward takes 1-3 minutes on two cores
def test_compile_trains_the_same_model(tmp_path, default_update):
    import shutil

    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        pytest.skip("torch.compile on CPU needs a C++ compiler")
    other, trainer = update(tmp_path, "compiled", 1, "train.compile=true")
    assert trainer.forward is not trainer.model  # the compiled wrapper ran the step
    assert relative_difference(default_update, other) < 1e-3  # measured 6e-5


@pytest.mark.parametrize("key, default", [("channels_last", "auto"), ("compile", False)])
def test_speed_options_must_be_booleans(key, default):
    train, _ = training_settings({"train": {}})
    assert train[key] == default
    with pytest.raises(ConfigError, match=f"train.{key}"):
        training_settings({"train": {key: "yes"}})


def test_bench_train_rows_against_the_plain_loop(tmp_path, capsys):
    cfg = load_config(apply_overrides(load_config("synthetic"), TINY))
    # data the machine does not have: the synthetic scenes stand in, with the config's tasks
    cfg["data"] = {"train": {"type": "list", "list": str(tmp_path / "missing.txt"), "transforms": {"size": [48, 48]}}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "train_bench.json"
    assert (
        main(
            [
                "bench",
                "--train",
                "--config",
                str(path),
                "--batch",
                "2",
                "--reps",
                "2",
                "--warmup",
                "1",
                "--settings",
                "plain,trainer,channels_last,amp_bf16",
                "--loader-batches",
                "2",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "vs plain" in text and "data loader, 0 worker(s)" in text
    result = json.loads(out.read_text())
    assert result["batch"] == 2 and result["size"] == "48x48" and "standing in" in result["data"]
    rows = {r["setting"]: r for r in result["rows"]}
    assert list(rows) == ["plain", "trainer", "channels_last", "amp_bf16"]
    assert rows["plain"]["vs_plain"] == 1.0
    for name in ("plain", "trainer", "channels_last"):
        row = rows[name]
        assert row["status"] == "ok" and row["step_ms_p90"] >= row["step_ms_median"] > 0
        assert row["images_per_s"] == pytest.approx(2 * 1000.0 / row["step_ms_median"])
        assert row["vs_plain"] == pytest.approx(row["images_per_s"] / rows["plain"]["images_per_s"])
    assert rows["amp_bf16"]["status"] == "skipped" and "CUDA" in rows["amp_bf16"]["reason"]
    (loader,) = result["loader"]
    assert loader["workers"] == 0 and loader["images"] == 4 and loader["images_per_s"] > 0
    assert loader["images_per_s_per_worker"] == loader["images_per_s"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--settings", "plain,warp"], "unknown training setting"),
        (["--size", "64x64,32x32"], "one --size"),
        (["--loader-workers", "x"], "--loader-workers"),
        (["--weights", "m.pt"], "drop --weights"),
    ],
)
def test_bench_train_bad_arguments_exit_2(argv, message, capsys):
    assert main(["bench", "--train", "--config", "synthetic"] + argv) == 2
    assert message in capsys.readouterr().err
