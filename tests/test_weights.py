"""The original Multi-Task RefineNet checkpoints: layout detection, conversion, exactness, safe loading.

No real checkpoint is available offline, so the tests build state dicts with every key and
shape of the authors' three-task network (hydranet/weights/mtrn_three_task_keys.tsv, a copy
of the key table taken from the authors' network) filled with random values, save them the
way the authors' files are saved, and convert them. Exactness is checked against an
independent functional implementation of the authors' forward pass written below.
"""

import argparse
import ast
import builtins
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import hydranet
from hydranet.checkpoint import read_checkpoint, safe_load, save_model
from hydranet.cli import main
from hydranet.errors import CheckpointError
from hydranet.models.refinenet import ChainedResidualPool, LightRefineNet
from hydranet.weights import (
    convert_file,
    convert_state_dict,
    detect_layout,
    load_original,
    synthetic_original_state_dict,
)

KEY_TABLE = Path(hydranet.__file__).parent / "weights" / "mtrn_three_task_keys.tsv"
NORMAL_KEYS = ("pre_normal.weight", "normal.weight", "normal.bias")

# layout name: (segm classes, normals head, Hydranet tasks in output order)
LAYOUTS = {
    "nyud_three": (40, True, ["segm", "depth", "normals"]),
    "nyud_joint": (40, False, ["segm", "depth"]),
    "kitti_joint": (6, False, ["segm", "depth"]),
    "nyudkitti_joint": (46, False, ["segm_nyud", "segm_kitti", "depth"]),
}


def read_key_table():
    table = {}
    for line in KEY_TABLE.read_text().splitlines():
        key, shape, dtype = line.split("\t")
        table[key] = (ast.literal_eval(shape), dtype)
    return table


def original_state_dict(segm_classes, normals, seed=0):
    """Random values for every key and shape of the authors' table (joint layouts: no normals)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, (shape, dtype) in read_key_table().items():
        if not normals and key in NORMAL_KEYS:
            continue
        if key in ("segm.weight", "segm.bias"):
            shape = (segm_classes,) + tuple(shape[1:])
        if dtype == "int64":
            sd[key] = torch.randint(1, 5000, shape, generator=g)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[key] = torch.randn(shape, generator=g) * (0.2 if len(shape) > 1 else 1.0)
    return sd


def save_like_the_authors(sd, path, data_parallel=False, legacy=False):
    """{'state_dict': ..., 'epoch': ..., 'best_val': NumPy scalar}, as old training scripts wrote."""
    if data_parallel:
        sd = {f"module.{k}": v for k, v in sd.items()}
    obj = {"state_dict": sd, "epoch": 300, "best_val": np.float64(0.42), "lr": [5e-4, 5e-3]}
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """layout name -> (raw state dict, path of the saved original checkpoint)."""
    root = tmp_path_factory.mktemp("originals")
    out = {}
    for i, (name, (classes, normals, _)) in enumerate(LAYOUTS.items()):
        sd = original_state_dict(classes, normals, seed=i)
        # The authors' files come from old PyTorch (legacy format) and DataParallel runs.
        path = save_like_the_authors(sd, root / f"{name}.ckpt", data_parallel=i % 2 == 1, legacy=i < 2)
        out[name] = (sd, path)
    return out


# --- an independent reference of the authors' network ------------------------------------------

MBV2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _conv(sd, name, x, stride=1, groups=1):
    w = sd[f"{name}.weight"]
    return F.conv2d(x, w, sd.get(f"{name}.bias"), stride, w.shape[-1] // 2, 1, groups)


def _conv_bn(sd, name, x, stride=1, groups=1, relu=True):
    x = _conv(sd, f"{name}.0", x, stride, groups)
    x = F.batch_norm(
        x,
        sd[f"{name}.1.running_mean"],
        sd[f"{name}.1.running_var"],
        sd[f"{name}.1.weight"],
        sd[f"{name}.1.bias"],
        False,
        0.0,
        1e-5,
    )
    return F.relu6(x) if relu else x


def _crp(sd, name, x, groups):
    top = x
    for i in range(1, 5):
        top = _conv(sd, f"{name}.0.{i}_outvar_dimred", F.max_pool2d(top, 5, 1, 2), groups=groups)
        x = top + x
    return x


def _up(x, like):
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def reference_forward(sd, x):
    """The authors' forward pass, written from the published description (eval mode, stride 4)."""
    x = _conv_bn(sd, "layer1", x, stride=2)
    cin, feats = 32, {}
    for layer, (t, c, n, s) in enumerate(MBV2, start=2):
        for j in range(n):
            stride, p = (s if j == 0 else 1), f"layer{layer}.{j}.output"
            out = _conv_bn(sd, f"{p}.0", x)  # expand (also t=1)
            out = _conv_bn(sd, f"{p}.1", out, stride=stride, groups=cin * t)  # depthwise 3x3
            out = _conv_bn(sd, f"{p}.2", out, relu=False)  # project
            x = out + x if stride == 1 and cin == c else out
            cin = c
        feats[layer] = x
    l3, l4, l5, l6, l7, l8 = (feats[i] for i in range(3, 9))
    l7 = F.relu6(_conv(sd, "conv8", l8) + _conv(sd, "conv7", l7))
    l7 = _up(_conv(sd, "conv_adapt4", _crp(sd, "crp4", l7, 1)), l6)
    l5 = F.relu6(_conv(sd, "conv5", l5) + _conv(sd, "conv6", l6) + l7)
    l5 = _up(_conv(sd, "conv_adapt3", _crp(sd, "crp3", l5, 1)), l4)
    l4 = F.relu6(_conv(sd, "conv4", l4) + l5)
    l4 = _up(_conv(sd, "conv_adapt2", _crp(sd, "crp2", l4, 1)), l3)
    l3 = _crp(sd, "crp1", F.relu6(_conv(sd, "conv3", l3) + l4), 256)
    return {
        head: _conv(sd, head, F.relu6(_conv(sd, f"pre_{head}", l3, groups=256)))
        for head in ("segm", "depth", "normal")
        if f"{head}.weight" in sd
    }


def expected_destination(key, layout_name):
    """Where an original key must land, written out by hand from the module names."""
    if key.startswith("layer"):
        return [f"encoder.{key}"]
    name = key.split(".")[0]
    lateral = {"conv3": 0, "conv4": 1, "conv5": 2, "conv6": 3, "conv7": 4, "conv8": 5}
    crp = {"crp4": 0, "crp3": 1, "crp2": 2, "crp1": 3}
    adapt = {"conv_adapt4": 0, "conv_adapt3": 1, "conv_adapt2": 2}
    if name in lateral:
        return [f"decoder.lateral.{lateral[name]}.weight"]
    if name in crp:
        stage = int(key.split(".")[2][0])
        return [f"decoder.crp.{crp[name]}.convs.{stage - 1}.weight"]
    if name in adapt:
        return [f"decoder.adapt.{adapt[name]}.weight"]
    head = name.replace("pre_", "")
    tasks = {
        "segm": ["segm_nyud", "segm_kitti"] if layout_name == "nyudkitti_joint" else ["segm"],
        "depth": ["depth"],
        "normal": ["normals"],
    }[head]
    index = 0 if name.startswith("pre_") else 2
    return [f"heads.{t}.{index}.{key.split('.')[-1]}" for t in tasks]


# --- (a) every tensor placed, every model tensor filled -------------------------------------------


def test_key_table_is_the_authors_three_task_network():
    table = read_key_table()
    assert len(table) == 346
    assert table["layer2.0.output.0.0.weight"] == ((32, 32, 1, 1), "float32")  # the t=1 expand conv
    assert table["crp1.0.1_outvar_dimred.weight"] == ((256, 1, 1, 1), "float32")  # depthwise last CRP
    assert table["segm.weight"] == ((40, 256, 3, 3), "float32")
    assert table["normal.bias"] == ((3,), "float32")
    assert sum(dtype == "int64" for _, dtype in table.values()) == 52  # BN num_batches_tracked
    synthetic = synthetic_original_state_dict(40, normals=True)
    assert {k: tuple(v.shape) for k, v in synthetic.items()} == {k: tuple(s) for k, (s, _) in table.items()}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_convert_places_every_tensor_and_fills_the_model(originals, name):
    classes, normals, tasks = LAYOUTS[name]
    sd, path = originals[name]
    layout = detect_layout(sd)
    assert layout.name == name and layout.segm_classes == classes
    config, state, meta = convert_file(path)
    assert [t["name"] for t in config["tasks"]] == tasks
    assert meta["layout"] == name and meta["source_file"] == {
        "file": path.name,
        "tensors": len(sd),
        "epoch": 300,
        "best_val": 0.42,
    }
    # Every original tensor equals its destination(s): BN statistics and counters included.
    filled = set()
    for key, tensor in sd.items():
        for dst in expected_destination(key, name):
            value = state[dst]
            if key in ("segm.weight", "segm.bias") and name == "nyudkitti_joint":
                tensor_part = tensor[:40] if "segm_nyud" in dst else tensor[40:]
            else:
                tensor_part = tensor
            assert value.dtype == tensor_part.dtype and torch.equal(value, tensor_part), (key, dst)
            filled.add(dst)
    # ... and every tensor of the model was filled, with nothing else.
    model = hydranet.build_model(config)
    assert filled == set(state) == set(model.state_dict())
    extra = 3 if name == "nyudkitti_joint" else 0  # the second head's pre conv, weight, bias
    assert len(state) == len(sd) + extra == (346 if normals or extra else 343)
    model.load_state_dict(state, strict=True)


# --- (b) exactly the authors' outputs ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_converted_model_reproduces_the_original_exactly(originals, name):
    sd, path = originals[name]
    model = load_original(path)
    assert not model.training
    x = torch.randn(1, 3, 67, 93, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = reference_forward(sd, x)
        low = model(x, upsample=False)
        full = model(x)
    assert ref["segm"].shape[-2:] == (17, 24)  # stride 4 of 67 x 93
    assert torch.isfinite(ref["segm"]).all() and ref["segm"].std() > 0
    if name == "nyudkitti_joint":
        expected = {"segm_nyud": ref["segm"][:, :40], "segm_kitti": ref["segm"][:, 40:], "depth": ref["depth"]}
    else:
        expected = {{"normal": "normals"}.get(k, k): v for k, v in ref.items()}
    assert list(low) == list(expected)
    for task, value in expected.items():
        assert torch.equal(low[task], value), f"{task}: max diff {(low[task] - value).abs().max()}"
        assert torch.equal(full[task], F.interpolate(value, size=(67, 93), mode="bilinear", align_corners=False))


# --- (c) hand-worked CRP and decoder stage ----------------------------------------------------------


def _set_1x1(conv, value):
    with torch.no_grad():
        conv.weight.fill_(value)


def test_crp_block_by_hand():
    # One channel, 4x4 input; 5x5 max pooling (stride 1, padding 2) then 1x1 convs of 0.5, -1, 2, 0.5.
    crp = ChainedResidualPool(1, stages=4, kernel_size=1)
    for conv, w in zip(crp.convs, (0.5, -1.0, 2.0, 0.5)):
        _set_1x1(conv, w)
    x = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 2]]).view(1, 1, 4, 4)
    # pool(x) = [[1,1,1,0],[1,2,2,2],[1,2,2,2],[0,2,2,2]]; top1 = 0.5 * that; x1 = x + top1
    # pool(top1) = 1 everywhere -> top2 = -1, x2 = x1 - 1
    # pool(top2) = -1 (padding never wins a max) -> top3 = -2, x3 = x2 - 2
    # pool(top3) = -2 -> top4 = -1, x4 = x3 - 1
    expected = torch.tensor(
        [[-2.5, -3.5, -3.5, -4.0], [-3.5, -3.0, -3.0, -3.0], [-3.5, -3.0, -3.0, -3.0], [-4.0, -3.0, -3.0, -1.0]]
    ).view(1, 1, 4, 4)
    assert torch.equal(crp(x), expected)


def test_light_refinenet_stages_by_hand():
    # Width 1, one CRP stage per path; features: f0 4x4 (stride 4), f1 and f2 2x2 (stride 8).
    dec = LightRefineNet((1, 1, 1), (4, 8, 8), width=1, crp_stages=1)
    for conv, w in zip(dec.lateral, (1.0, 1.0, 2.0)):
        _set_1x1(conv, w)
    _set_1x1(dec.crp[0].convs[0], 0.5)
    _set_1x1(dec.adapt[0], 2.0)
    _set_1x1(dec.crp[1].convs[0], -0.5)
    assert dec.crp[1].convs[0].groups == 1 and dec.crp[0].convs[0].groups == 1  # width 1: same thing
    f1 = torch.tensor([[1.0, 2], [3, 4]]).view(1, 1, 2, 2)
    f2 = torch.tensor([[1.0, 0], [0, -4]]).view(1, 1, 2, 2)
    f0 = torch.zeros(1, 1, 4, 4)
    f0[0, 0, 0, 0] = -9.0
    # Coarse path: relu6(1*f1 + 2*f2) = [[3,2],[3,0]]; CRP: pool = 3 -> +1.5 = [[4.5,3.5],[4.5,1.5]];
    # adapt x2 = [[9,7],[9,3]]; bilinear 2x2 -> 4x4 (align_corners=False) uses weights
    # (1,0), (.75,.25), (.25,.75), (0,1) along each axis:
    top = torch.tensor([[9.0, 8.5, 7.5, 7.0], [9.0, 8.25, 6.75, 6.0], [9.0, 7.75, 5.25, 4.0], [9.0, 7.5, 4.5, 3.0]])
    # Fine path: relu6(f0 + top) -> CRP: every 5x5 window holds a 6 -> adds -0.5 * 6 = -3.
    expected = (torch.clamp(f0[0, 0] + top, 0, 6) - 3).view(1, 1, 4, 4)
    assert torch.equal(expected[0, 0], torch.tensor([[-3.0, 3, 3, 3], [3, 3, 3, 3], [3, 3, 2.25, 1], [3, 3, 1.5, 0]]))
    assert torch.equal(dec([f0, f1, f2]), expected)


# --- (d) pickled code is refused and never runs --------------------------------------------------------


class RunsCode:
    """Unpickling this calls open(path, 'w'): a stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def test_the_crafted_payload_really_runs_code_under_plain_pickle(tmp_path):
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(RunsCode(marker))).close()
    assert marker.exists()


@pytest.mark.parametrize("legacy", [False, True])
def test_pickled_code_is_refused_everywhere_and_never_runs(tmp_path, originals, legacy):
    marker = tmp_path / "pwned"
    sd, _ = originals["nyud_joint"]
    evil_original = tmp_path / "ExpNYUD_joint.ckpt"
    torch.save({"state_dict": sd, "epoch": RunsCode(marker)}, evil_original, _use_new_zipfile_serialization=not legacy)
    model = hydranet.build_model(
        {"model": {"encoder": "mtrn_mobilenet_v2"}, "tasks": [{"name": "depth", "kind": "depth"}]}
    )
    evil_hydranet = tmp_path / "evil.pt"
    from hydranet.checkpoint import model_checkpoint

    torch.save(
        {**model_checkpoint(model), "meta": RunsCode(marker)}, evil_hydranet, _use_new_zipfile_serialization=not legacy
    )

    for path in (evil_original, evil_hydranet):
        for load in (safe_load, hydranet.load_model, load_original, convert_file):
            with pytest.raises(CheckpointError, match="refused.*could run code"):
                load(path)
        assert main(["convert", str(path), str(tmp_path / "out.pt")]) == 2
    assert not marker.exists()
    assert not (tmp_path / "out.pt").exists()


# --- (e) keys that do not fit ---------------------------------------------------------------------------


def test_unplaced_and_missing_keys_are_listed(originals):
    sd = dict(originals["nyud_three"][0])
    sd["aux_head.weight"] = torch.zeros(3, 256, 1, 1)
    del sd["layer3.0.output.1.0.weight"]
    sd["conv_adapt3.weight"] = torch.zeros(256, 128, 1, 1)
    with pytest.raises(CheckpointError) as info:
        convert_state_dict(sd)
    msg = str(info.value)
    assert "2 original key(s) could not be placed" in msg
    assert "aux_head.weight (3, 256, 1, 1): no place for it" in msg
    assert "conv_adapt3.weight (256, 128, 1, 1) -> decoder.adapt.1.weight: the model expects (256, 256, 1, 1)" in msg
    assert "2 model key(s) were left unfilled" in msg
    assert "encoder.layer3.0.output.1.0.weight (96, 1, 3, 3)" in msg
    assert "decoder.adapt.1.weight (256, 256, 1, 1)" in msg


def test_not_an_original_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="none of the heads"):
        detect_layout({"fc.weight": torch.zeros(2, 2)})
    torch.save({"model": {"a": 1}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no 'state_dict' entry"):
        convert_file(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not tensors"):
        convert_state_dict({"segm.weight": torch.zeros(4, 256, 3, 3), "epoch": 3})


# --- (f) the command line, and the project's own checkpoints ------------------------------------------

PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _plain(obj):
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return all(_plain(v) for v in obj)
    return isinstance(obj, PLAIN)


def test_convert_command_end_to_end(tmp_path, originals, capsys):
    sd, src = originals["nyudkitti_joint"]
    dst = tmp_path / "nyudkitti.pt"
    assert main(["convert", str(src), str(dst), "--json", str(tmp_path / "report.json")]) == 0
    printed = capsys.readouterr().out
    assert "nyudkitti_joint = ExpNYUDKITTI_joint.ckpt: segm_nyud (40 classes), segm_kitti (6 classes), depth" in printed
    assert "mapped 343 original tensors to 346 model tensors" in printed
    ckpt = read_checkpoint(dst)
    assert _plain(ckpt)
    meta = ckpt["meta"]
    assert meta == ckpt["config"]["meta"]
    assert meta["normalization"] == {
        "color": "RGB",
        "scale": 1 / 255,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }
    assert meta["depth"]["per_dataset"] == {
        "nyud": {"png_scale": 5000.0, "max_depth": 10.0},
        "kitti": {"png_scale": 256.0, "max_depth": 80.0},
    }
    tasks = {t["name"]: t for t in ckpt["config"]["tasks"]}
    assert tasks["segm_nyud"]["class_names"][:3] == ["wall", "floor", "cabinet"]
    assert len(tasks["segm_nyud"]["class_names"]) == 40 and len(tasks["segm_kitti"]["class_names"]) == 6
    # The file alone rebuilds the model.
    model = hydranet.load_model(dst)
    x = torch.randn(1, 3, 35, 50)
    with torch.no_grad():
        a, b = model(x, upsample=False), load_original(src)(x, upsample=False)
        ref = reference_forward(sd, x)
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert torch.equal(a["segm_kitti"], ref["segm"][:, 40:])
    assert (tmp_path / "report.json").is_file()


@pytest.mark.parametrize("name", ["nyud_joint", "kitti_joint", "nyud_three"])
def test_converted_meta_per_layout(tmp_path, originals, name):
    report = hydranet.weights.convert(originals[name][1], tmp_path / "m.pt")
    cfg = hydranet.load_model(tmp_path / "m.pt").config
    depth = next(t for t in cfg["tasks"] if t["name"] == "depth")
    scale, cap = {"kitti_joint": (256.0, 80.0)}.get(name, (5000.0, 10.0))
    assert depth["options"] == {"take_abs": True, "max_depth": cap, "depth_scale": scale}
    assert cfg["meta"]["depth"]["png_scale"] == scale and cfg["meta"]["known_as"] == report["meta"]["known_as"]
    segm = next(t for t in cfg["tasks"] if t["name"] == "segm")
    assert len(segm["class_names"]) == segm["classes"] == LAYOUTS[name][0]


def test_own_checkpoint_round_trip_loads_safely(tmp_path):
    cfg = {
        "model": {"encoder": "mobilenet_v2", "encoder_options": {"width_mult": 0.35}, "width": 16},
        "tasks": [{"name": "segm", "kind": "segmentation", "classes": 3}, {"name": "depth", "kind": "depth"}],
    }
    model = hydranet.build_model(cfg).eval()
    path = tmp_path / "own.pt"
    save_model(model, path, meta={"note": "round trip", "numbers": [1, 2.5]})
    raw = torch.load(path, map_location="cpu", weights_only=True)  # the strict loader accepts it
    assert _plain(raw) and raw["meta"]["note"] == "round trip"
    loaded = hydranet.load_model(path)
    x = torch.randn(2, 3, 33, 47)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_encoder_weights_flag():
    from hydranet.cli.train import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)  # --encoder-weights is train's flag
    assert p.parse_args([]).encoder_weights is None
    assert p.parse_args(["--encoder-weights", "mnv2.pth"]).encoder_weights == "mnv2.pth"
