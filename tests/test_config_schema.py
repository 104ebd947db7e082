"""The typed config schema (issue 23): every class of wrong value is one line naming the path,
the value and what was expected; unknown keys suggest the nearest; limits hold everywhere a
size enters; YAML cannot expand past its budget; options that cannot apply are refused."""

import copy
import time

import pytest
import torch
from support import tiny_config

from hydranet.checkpoint import content_hash, save_model
from hydranet.cli import main
from hydranet.config import load_config, parse_config
from hydranet.errors import CheckpointError, ConfigError
from hydranet.limits import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, max_pixels
from hydranet.training.settings import apply_overrides

TASKS = [
    {"name": "segm", "kind": "segmentation", "classes": 8},
    {"name": "depth", "kind": "depth"},
    {"name": "count", "kind": "regression", "outputs": 1},
]


def base(**sections):
    cfg = tiny_config(tasks=copy.deepcopy(TASKS))
    cfg["data"] = {"train": {"type": "synthetic", "num_samples": 4, "size": [32, 32]}}
    cfg.update(copy.deepcopy(sections))
    return cfg


def with_set(*items):
    return apply_overrides(base(), list(items))


def error_of(cfg) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    message = str(info.value)
    assert "\n" not in message  # one line
    return message


@pytest.mark.parametrize(
    "override, expected",
    [
        # a list where a name is expected
        ("tasks[0].kind", r"^tasks\[0\]\.kind: got \['depth'\] \(a list\); expected text$"),
        ("model.decoder", r"^model\.decoder: got \['lightweight'\] \(a list\); expected text$"),
        ("tasks[1].loss", r"^tasks\[1\]\.loss: got \['l1'\] \(a list\); expected text$"),
        ("data.train.type", r"^data\.train\.type: got \['synthetic'\]; expected one of synthetic, list"),
    ],
)
def test_a_list_where_a_name_is_expected(override, expected):
    cfg = base()
    name = {"tasks[0].kind": "depth", "model.decoder": "lightweight", "tasks[1].loss": "l1"}.get(override, "synthetic")
    if override.startswith("tasks"):
        index, key = int(override[6]), override.split(".")[1]
        cfg["tasks"][index][key] = [name]
    elif override == "model.decoder":
        cfg["model"]["decoder"] = [name]
    else:
        cfg["data"]["train"]["type"] = [name]
    import re

    assert re.search(expected, error_of(cfg)), error_of(cfg)


def test_a_number_where_a_list_is_expected():
    cfg = base()
    cfg["tasks"][0]["metrics"] = 5
    assert error_of(cfg) == "tasks[0].metrics: got 5; expected a list"
    cfg = base()
    cfg["tasks"][0]["class_names"] = 3
    assert error_of(cfg) == "tasks[0].class_names: got 3; expected a list"
    cfg = base()
    cfg["data"]["train"]["label_dropout"] = 0.5
    assert error_of(cfg) == "data.train.label_dropout: got 0.5; expected a mapping"


def test_text_or_null_where_a_number_is_expected():
    cfg = base()
    cfg["tasks"][1]["options"] = {"max_depth": "far"}
    assert error_of(cfg) == "tasks[1].options.max_depth: got 'far' (text); expected a number"
    cfg = base()
    cfg["tasks"][2]["options"] = {"target_mean": "abc"}
    assert error_of(cfg) == "tasks[2].options.target_mean: got 'abc' (text); expected a number"
    cfg = base()
    cfg["tasks"][0]["loss_options"] = {"label_smoothing": None}
    assert error_of(cfg) == "tasks[0].loss_options.label_smoothing: got None; expected a number"
    cfg = base(loss={"weighting": "gradnorm", "options": {"alpha": None}})
    assert error_of(cfg) == "loss.options.alpha: got None; expected a number"
    cfg = base()
    cfg["data"]["train"]["label_dropout"] = {"segm": "half"}
    assert error_of(cfg) == "data.train.label_dropout.segm: got 'half' (text); expected a number"


def test_a_scalar_where_a_section_is_expected():
    assert error_of(with_set("data=5")).startswith("data: got 5; expected a mapping")
    assert error_of(with_set("train=5")) == "train: got 5; expected a mapping (a section of keys)"
    assert error_of(with_set("data.train=5")).startswith("data.train: got 5; expected a data set mapping")
    with pytest.raises(ConfigError, match=r"--set train\.lr\.x: train\.lr is not a section"):
        apply_overrides(base(train={"lr": 0.1}), ["train.lr.x=1"])


def test_unknown_keys_suggest_the_nearest():
    assert error_of(base(train={"lrr": 0.1})).startswith("train.lrr: unknown field; did you mean 'lr'? (valid: steps,")
    cfg = base()
    cfg["tasks"][1]["optoins"] = {}
    assert "tasks[1].optoins: unknown field; did you mean 'options'?" in error_of(cfg)
    cfg = base()
    cfg["model"]["widht"] = 8
    assert "model.widht: unknown field; did you mean 'width'?" in error_of(cfg)
    cfg = base()
    cfg["tasks"][1]["options"] = {"max_dpeth": 10}
    assert "tasks[1].options.max_dpeth: unknown field; did you mean 'max_depth'?" in error_of(cfg)
    cfg = base()
    cfg["tasks"][1]["kind"] = "dpeth"
    assert error_of(cfg).startswith("tasks[1].kind: unknown task kind 'dpeth'; did you mean 'depth'?")
    assert error_of(base(loss={"weighting": "uncertanity"})).startswith(
        "loss.weighting: unknown weighting 'uncertanity'; did you mean 'uncertainty'?"
    )
    assert error_of(base(trian={})).startswith("config: unknown section 'trian'; did you mean 'train'?")
    cfg = base()
    cfg["data"]["train"]["transforms"] = {"hflp": 0.5}
    assert "data.train.transforms.hflp: unknown field; did you mean 'hflip'?" in error_of(cfg)


def test_numbers_booleans_and_non_finite_values():
    cfg = parse_config(base(train={"lr": "1e-3", "weight_decay": "0"}))  # YAML 1.1 reads 1e-3 as text
    assert cfg.train.lr == 0.001 and isinstance(cfg.train.lr, float) and cfg.train.weight_decay == 0.0
    assert error_of(base(train={"lr": True})) == "train.lr: got True; expected a number, got a boolean"
    assert error_of(base(train={"steps": 2.5})) == "train.steps: got 2.5; expected an integer"
    assert error_of(base(train={"steps": "10"})) == "train.steps: got '10' (text); expected an integer"
    assert error_of(base(train={"plots": 1})) == "train.plots: got 1; expected true or false"
    assert error_of(base(train={"lr": float("inf")})) == "train.lr: got inf; expected a finite number"
    assert error_of(base(train={"lr": "nan"})) == "train.lr: got 'nan' (text); expected a finite number"


def test_non_finite_initial_log_variances_are_refused_at_parse_time():
    msg = error_of(base(loss={"initial_log_vars": [float("nan"), 0, 0]}))
    assert msg == "loss.initial_log_vars[0]: got nan; expected a finite number"
    msg = error_of(base(loss={"options": {"initial_log_vars": {"depth": "inf"}}}))
    assert msg == "loss.options.initial_log_vars.depth: got 'inf' (text); expected a finite number"
    assert error_of(base(loss={"initial_log_vars": "0,nan,0"})).startswith("loss.initial_log_vars[1]: got 'nan'")
    assert error_of(base(loss={"initial_log_vars": [0, 0]})) == (
        "loss.initial_log_vars: 2 values for 3 tasks (segm, depth, count)"
    )
    assert error_of(base(loss={"weighting": "equal", "initial_log_vars": [0, 0, 0]})).startswith(
        "loss.initial_log_vars: the equal weighting has no log-variances"
    )


def test_initial_log_variances_are_bounded():
    # found by `make fuzz`: s = 58365 overflowed exp(s) in the log (a traceback), s = 1e241 made
    # the first step's parameters infinite (an error naming no field)
    assert error_of(base(loss={"initial_log_vars": [0, 58365, 0]})) == (
        "loss.initial_log_vars[1]: got 58365; expected a value <= 30"
    )
    assert error_of(base(loss={"options": {"initial_log_vars": {"depth": -1e241}}})) == (
        "loss.options.initial_log_vars.depth: got -1e+241; expected a value >= -30"
    )
    assert load_config(base(loss={"initial_log_vars": [-30, 0, 30]}))["loss"]["initial_log_vars"] == [-30, 0, 30]


def test_learning_rates_are_bounded():
    # found by `make fuzz`: encoder_lr_mult = 1e308 overflowed float32 in the optimiser (a traceback)
    assert (
        error_of(base(train={"encoder_lr_mult": 1e308}))
        == "train.encoder_lr_mult: got 1e+308; expected a value <= 1000"
    )
    assert error_of(base(train={"lr": 1e11})) == "train.lr: got 100000000000.0; expected a value <= 100"
    assert error_of(base(loss={"log_var_lr": 101})) == "loss.log_var_lr: got 101; expected a value <= 100"


def test_pixel_limits_and_the_knob_that_raises_them(monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    assert max_pixels() == DEFAULT_MAX_PIXELS
    cfg = base()
    cfg["data"]["train"]["transforms"] = {"size": [9000, 9000]}  # 81 Mpx
    assert error_of(cfg) == (
        "data.train.transforms.size: got [9000, 9000] (a list); expected at most 64,000,000 pixels per image, "
        f"got 81,000,000 (raise the limit with {MAX_PIXELS_ENV})"
    )
    cfg["data"]["train"]["size"] = [16, 16]
    cfg["train"] = {"batch_size": 1}
    monkeypatch.setenv(MAX_PIXELS_ENV, "1e8")
    assert parse_config(cfg).data["train"].transforms.size == (9000, 9000)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ConfigError, match=f"{MAX_PIXELS_ENV}='lots'"):
        parse_config(cfg)
    monkeypatch.delenv(MAX_PIXELS_ENV)
    # batch x pixels: 64 x 2048 x 2048 = 268 M > 4 x 64 M
    big = base(train={"batch_size": 64})
    big["data"]["train"]["transforms"] = {"size": 2048}
    assert error_of(big).startswith("train.batch_size: 64 images of 2048x2048: expected at most 256,000,000 pixels")
    big["train"]["batch_size"] = 32
    parse_config(big)
    cfg = base()
    cfg["data"]["train"]["size"] = [100000, 1000]
    assert error_of(cfg).startswith("data.train.size: got [100000, 1000] (a list); expected at most 64,000,000 pixels")
    cfg = base()
    cfg["data"]["train"]["transforms"] = {"scale": [1, 100]}
    assert error_of(cfg) == "data.train.transforms.scale: need 0 < low <= high <= 8, got [1.0, 100.0]"
    vit = base(model={"encoder": "vit_s_16", "encoder_options": {"image_size": 100000}, "width": 16})
    assert error_of(vit) == "model.encoder_options.image_size: got 100000; expected a value <= 4096"


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["summary", "--config", "synthetic", "--size", "100000x100000"], "--size: size '100000x100000'"),
        (["summary", "--config", "synthetic", "--batch", "100000"], "--batch"),
        (["summary", "--config", "synthetic", "--batch", "64", "--size", "2048x2048"], "--batch 64 with --size"),
        (["demo", "--clip-size", "9000x9000"], "--clip-size"),
        (["bench", "--config", "synthetic", "--batch", "64", "--size", "2048x2048"], "--batch 64 with --size"),
        (["eval", "--batch-size", "0"], "--batch-size"),
    ],
)
def test_cli_sizes_and_batches_meet_the_same_limits(argv, flag, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and flag in err and "Traceback" not in err, err


BILLION_LAUGHS = "\n".join(
    ["tasks: [{name: depth, kind: depth}]", "meta:", '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"  {c}: &{c} [{','.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
)


def test_billion_laughs_yaml_is_one_error_at_once(tmp_path, capsys):
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS)
    assert len(path.read_bytes()) < 1000
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"laughs\.yaml: expands to more than 100,000 values"):
        load_config(path)
    assert main(["summary", "--config", str(path)]) == 2
    assert "billion laughs" in capsys.readouterr().err
    assert time.perf_counter() - start < 10  # refused without expanding 387 million values
    path.write_text(  # an alias for repeated transforms stays allowed
        "tasks: [{name: depth, kind: depth}]\ndata:\n  train: {type: synthetic, transforms: &tf {size: [32, 32]}}\n"
        "  val: {type: synthetic, transforms: *tf}\n"
    )
    assert load_config(path)["data"]["val"]["transforms"] == {"size": [32, 32]}
    path.write_text("tasks: &t [{name: depth, kind: depth, options: *t}]\n")
    with pytest.raises(ConfigError, match="contains itself"):
        load_config(path)
    cfg = base()
    with pytest.raises(ConfigError, match=r"--set meta\.x: expands to more than"):
        apply_overrides(cfg, ["meta.x=" + BILLION_LAUGHS.split("meta:\n", 1)[1].replace("\n  ", ", ").join("{}")])


def test_a_checkpoint_config_goes_through_the_same_parse(tmp_path):
    import hydranet

    model = hydranet.build_model(tiny_config(tasks=[{"name": "depth", "kind": "depth"}]))
    save_model(model, tmp_path / "m.pt")
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    ckpt["config"]["tasks"][0]["options"] = {"max_depth": "far"}
    ckpt["sha256"] = content_hash(ckpt["config"], ckpt["model"])
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad\.pt: invalid config .*tasks\[0\]\.options\.max_depth: got 'far'"):
        hydranet.load_model(tmp_path / "bad.pt")


def test_options_that_cannot_apply_are_refused(tmp_path, capsys):
    from hydranet.training import Trainer

    weights = tmp_path / "m.pt"
    import hydranet

    save_model(hydranet.build_model(tiny_config(tasks=[{"name": "depth", "kind": "depth"}])), weights)
    assert main(["eval", "--weights", str(weights), "--set", "model.width=8"]) == 2
    assert "--set model.width: eval takes the model and tasks from the checkpoint" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"train\.amp: fp16 mixed precision runs on CUDA only"):
        Trainer(base(train={"amp": "fp16"}), tmp_path / "amp", progress=False)
    with pytest.raises(ConfigError, match=r"train\.sync_bn: SyncBatchNorm needs CUDA"):
        Trainer(base(train={"sync_bn": True}), tmp_path / "sync", progress=False)
    cfg = base()
    cfg["tasks"][1]["classes"] = 3
    assert error_of(cfg) == "tasks[1].classes: a depth task has no classes (its size is 1); remove it"
    cfg = base()
    cfg["tasks"][1]["options"] = {"take_abs": False}
    assert error_of(cfg).startswith("tasks[1].options.take_abs: got False; expected one of True")


@pytest.mark.parametrize("name", ["synthetic", "nyud", "kitti", "json_targets", "json_targets_vit"])
def test_shipped_configs_are_canonical_fixed_points(name):
    once = load_config(name)
    assert load_config(once) == once  # a checkpoint's stored config parses to itself
    assert load_config(copy.deepcopy(once)) == once


def test_every_field_is_documented_and_the_json_schema_accepts_the_shipped_configs():
    from hydranet.config import CONFIG_DIR, read_yaml
    from hydranet.tools.config_reference import field_tables, json_schema, markdown

    tables = field_tables()
    assert {"train", "loss", "model", "tasks[]", "tasks[].options (kind: depth)", "data.<split> (type: list)"} <= set(
        tables
    )
    assert "loss.options (weighting: gradnorm)" in tables and "model.encoder_options (encoder: vit_b_16)" in tables
    undocumented = [(t, r["field"]) for t, table in tables.items() for r in table["fields"] if not r["description"]]
    assert undocumented == []
    lr = next(r for r in tables["train"]["fields"] if r["field"] == "lr")
    assert lr == {
        "field": "lr",
        "type": "number",
        "default": 0.001,
        "range": "> 0, <= 100",
        "description": lr["description"],
    }
    assert "| `max_depth` |" in markdown()
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json_schema())
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        errors = [e.message for e in validator.iter_errors(read_yaml(path))]
        assert errors == [], (path.name, errors[:3])
    assert list(validator.iter_errors({"tasks": [{"name": "d", "kind": "depth"}], "train": {"lrr": 1}}))


def test_random_rescale_is_checked_against_the_pixel_limit_per_image(monkeypatch):
    import numpy as np

    from hydranet.data.transforms import build_transforms
    from hydranet.errors import DataError

    transform = build_transforms({"scale": [1, 4], "size": [8, 8]}, train=True)
    sample = {"image": np.zeros((20, 10, 3), np.uint8), "id": "img7"}
    assert transform(sample, [])["image"].shape == (3, 8, 8)  # 10x20 x 4^2 = 3,200 pixels: fine
    monkeypatch.setenv(MAX_PIXELS_ENV, "3000")
    with pytest.raises(DataError, match=r"img7: a 10x20 image rescaled by up to 4 .transforms.scale. is 3,200 pixels"):
        transform(sample, [])
