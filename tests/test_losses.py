"""Masked task losses against hand-computed values on tiny tensors."""

import math

import pytest
import torch
from torch import nn

from hydranet.errors import ConfigError
from hydranet.losses import (
    LOSSES,
    clip_head_gradients,
    compute_losses,
    denormalize_prediction,
    normalize_target,
    resolve_loss,
    task_loss,
)
from hydranet.tasks import parse_task

NAN = float("nan")
LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)


def spec(**kw):
    return parse_task(kw)


def test_segmentation_cross_entropy_ignores_and_weights():
    # one image, 2 classes, 2x2 pixels; logits (0,0) -> p = 1/2, (ln3, 0) -> p = (3/4, 1/4)
    logits = torch.tensor([[[0.0, LN3], [LN3, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]).unsqueeze(0)
    target = torch.tensor([[[0, 0], [1, 255]]])
    s = spec(name="segm", kind="segmentation", classes=2)
    expected = (LN2 + math.log(4 / 3) + LN4) / 3  # the 255 pixel is ignored
    assert task_loss(s, logits, target).item() == pytest.approx(expected, rel=1e-5)
    sw = spec(name="segm", kind="segmentation", classes=2, loss_options={"class_weights": [1.0, 3.0]})
    expected_w = (LN2 + math.log(4 / 3) + 3 * LN4) / 5
    assert task_loss(sw, logits, target).item() == pytest.approx(expected_w, rel=1e-5)


def test_segmentation_absent_sample_and_all_ignored():
    s = spec(name="segm", kind="segmentation", classes=2)
    logits = torch.zeros(2, 2, 2, 2)
    logits[1, 0] = 5.0  # the absent sample's logits must not matter
    target = torch.tensor([[[0, 1], [1, 0]], [[1, 1], [1, 1]]])
    loss = task_loss(s, logits, target, torch.tensor([True, False]))
    assert loss.item() == pytest.approx(LN2, rel=1e-5)
    assert task_loss(s, logits, torch.full((2, 2, 2), 255), torch.tensor([True, True])) is None


def test_depth_l1_masks_zero_negative_nan():
    s = spec(name="depth", kind="depth")
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], requires_grad=True)
    target = torch.tensor([[[[1.5, 0.0], [NAN, 2.0]]]])
    loss = task_loss(s, pred, target)
    assert loss.item() == pytest.approx((0.5 + 2.0) / 2)
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.flatten().tolist() == pytest.approx([-0.5, 0.0, 0.0, 0.5])
    neg = torch.tensor([[[[-1.0, 2.0], [3.0, 5.0]]]])
    assert task_loss(s, pred.detach(), neg).item() == pytest.approx((0 + 0 + 1) / 3)


def test_depth_berhu_hand_values_and_zero_guard():
    s = spec(name="depth", kind="depth", loss="berhu")
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    target = torch.tensor([[[[1.5, 1.0], [3.0, 0.0]]]])
    # residuals 0.5, 1, 0 (last pixel invalid); c = 0.2 * 1 = 0.2
    expected = ((0.25 + 0.04) / 0.4 + (1 + 0.04) / 0.4 + 0.0) / 3
    assert task_loss(s, pred, target).item() == pytest.approx(expected, rel=1e-5)
    exact = torch.tensor([[[[1.0, 2.0]]]], requires_grad=True)
    loss = task_loss(s, exact, exact.detach().clone())
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(exact.grad).all()


def test_depth_silog_hand_value_and_options():
    s = spec(name="depth", kind="depth", loss="silog")
    pred = torch.tensor([[[[1.0, 2.0], [7.0, 7.0]]]])
    target = torch.tensor([[[[2.0, 2.0], [0.0, NAN]]]])
    # d = (-ln2, 0): mean d^2 = ln2^2 / 2, mean d = -ln2 / 2
    expected = LN2 * math.sqrt(0.5 - 0.85 / 4)
    assert task_loss(s, pred, target).item() == pytest.approx(expected, rel=1e-5)
    s0 = spec(name="depth", kind="depth", loss="silog", loss_options={"lambda": 0.0, "scale": 10.0})
    assert task_loss(s0, pred, target).item() == pytest.approx(10 * LN2 * math.sqrt(0.5), rel=1e-5)
    # a negative raw prediction is used through abs + clamp, no NaN
    neg = torch.tensor([[[[-2.0, 0.0]]]], requires_grad=True)
    loss = task_loss(s, neg, torch.tensor([[[[2.0, 2.0]]]]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(neg.grad).all()


def test_normals_cosine_and_angular():
    pred = torch.tensor([[2.0, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 0]]).T.reshape(1, 3, 2, 2)
    target = torch.tensor([[1.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]]).T.reshape(1, 3, 2, 2)
    cos = spec(name="n", kind="normals")
    ang = spec(name="n", kind="normals", loss="angular")
    assert task_loss(cos, pred, target).item() == pytest.approx((0 + 1 + 1 - 1 / math.sqrt(2)) / 3, rel=1e-5)
    assert task_loss(ang, pred, target).item() == pytest.approx((0 + math.pi / 2 + math.pi / 4) / 3, abs=1e-3)
    # NaN target pixel: masked, finite gradient
    target_nan = target.clone()
    target_nan[0, :, 1, 1] = NAN
    p = pred.clone().requires_grad_(True)
    loss = task_loss(ang, p, target_nan)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(p.grad).all()
    assert p.grad[0, :, 1, 1].abs().sum() == 0


def test_classification_label_smoothing_and_missing():
    s = spec(name="maker", kind="classification", classes=2, loss_options={"label_smoothing": 0.1})
    logits = torch.tensor([[LN3, 0.0], [9.0, -9.0]])
    target = torch.tensor([0, 255])
    expected = 0.95 * math.log(4 / 3) + 0.05 * LN4
    assert task_loss(s, logits, target, torch.tensor([True, False])).item() == pytest.approx(expected, rel=1e-5)
    assert task_loss(s, logits, target, torch.tensor([False, False])) is None


@pytest.mark.parametrize("loss,expected", [("l1", 4 / 3), ("mse", 2.0), ("smooth_l1", 2.5 / 3)])
def test_regression_normalised_targets(loss, expected):
    s = spec(name="diam", kind="regression", outputs=2, loss=loss, options={"target_mean": 10.0, "target_std": 2.0})
    target = torch.tensor([[12.0, NAN], [8.0, 14.0]])  # z = [[1, nan], [-1, 2]]
    pred = torch.zeros(2, 2, requires_grad=True)
    value = task_loss(s, pred, target)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[0, 1] == 0


def test_normalize_roundtrip_and_bad_std():
    s = spec(name="r", kind="regression", outputs=2, options={"target_mean": [1.0, 100.0], "target_std": [2.0, 50.0]})
    y = torch.tensor([[3.0, 50.0]])
    z = normalize_target(s, y)
    assert z.tolist() == [[1.0, -1.0]]
    assert torch.allclose(denormalize_prediction(s, z), y)
    plain = spec(name="r", kind="regression", outputs=1)
    assert normalize_target(plain, y) is y
    with pytest.raises(ConfigError):
        normalize_target(spec(name="r", kind="regression", outputs=1, options={"target_std": 0.0}), y)


def test_unknown_loss_and_option_raise_config_error():
    with pytest.raises(ConfigError, match="berhu"):  # lists the valid names for the kind
        resolve_loss(spec(name="d", kind="depth", loss="huberish"))
    with pytest.raises(ConfigError, match="cosine"):
        resolve_loss(spec(name="n", kind="normals", loss="l1"))
    with pytest.raises(ConfigError, match=r"loss_options\.beta: unknown field \(this loss takes no options\)"):
        resolve_loss(spec(name="d", kind="depth", loss="l1", loss_options={"beta": 1}))
    assert set(LOSSES) >= {"cross_entropy", "l1", "berhu", "silog", "cosine", "angular", "mse", "smooth_l1"}


class TwoHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Conv2d(3, 4, 1)
        self.heads = nn.ModuleDict({"segm": nn.Conv2d(4, 3, 1), "depth": nn.Conv2d(4, 1, 1)})

    def forward(self, x):
        f = self.trunk(x)
        return {k: h(f) for k, h in self.heads.items()}


def test_compute_losses_skips_unlabelled_task_no_gradient():
    torch.manual_seed(0)
    model = TwoHead()
    tasks = [spec(name="segm", kind="segmentation", classes=3), spec(name="depth", kind="depth")]
    batch = {
        "image": torch.randn(2, 3, 4, 4),
        "targets": {"segm": torch.full((2, 4, 4), 255), "depth": torch.rand(2, 1, 4, 4) + 0.5},
        "present": {"segm": torch.tensor([False, False]), "depth": torch.tensor([True, True])},
    }
    batch["targets"]["depth"][0, 0, 0, 0] = NAN
    losses = compute_losses(model(batch["image"]), batch, tasks)
    assert set(losses) == {"depth"}
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.heads["segm"].parameters())
    assert all(torch.isfinite(p.grad).all() for p in model.heads["depth"].parameters())
    # a task with no targets key at all is skipped too
    del batch["targets"]["segm"]
    assert set(compute_losses(model(batch["image"]), batch, tasks)) == {"depth"}


def test_clip_head_gradients_caps_each_head():
    torch.manual_seed(0)
    model = TwoHead()
    out = model(torch.randn(2, 3, 4, 4))
    (1000 * out["segm"].sum() + 0.001 * out["depth"].sum()).backward()
    before = clip_head_gradients(model.heads, max_norm=1.0)
    assert before["segm"] > 1.0 and before["depth"] < 1.0
    for head in model.heads.values():  # segm, then depth: ``norm`` ends as depth's
        norm = torch.norm(torch.stack([p.grad.norm() for p in head.parameters()]))
        assert norm.item() <= 1.0 + 1e-4
    assert norm.item() == pytest.approx(before["depth"], rel=1e-5)  # depth was under the cap: untouched
    # a head with no gradient is left out
    model.zero_grad(set_to_none=True)
    model(torch.randn(1, 3, 2, 2))["depth"].sum().backward()
    assert set(clip_head_gradients(model.heads, 1.0)) == {"depth"}


# --- global losses over ranks (the math behind torchrun = one process) ---------------------------


class _Group:
    """W ranks simulated by threads: a collective waits for every rank, as torch.distributed does."""

    def __init__(self, world):
        import threading

        self.world, self.slots, self.barrier = world, {}, threading.Barrier(world)

    def rank(self, r):
        group = self

        class Reduction:
            world_size = group.world

            def _op(self, t, fn):
                group.slots[r] = t.detach().clone()
                group.barrier.wait()
                out = fn(torch.stack([group.slots[i] for i in range(group.world)]))
                group.barrier.wait()
                return out

            def sum(self, t):
                return self._op(t, lambda s: s.sum(0))

            def max(self, t):
                return self._op(t, lambda s: s.max(0).values)

        return Reduction()


@pytest.mark.parametrize("depth_loss", ["berhu", "silog", "l1"])
def test_rank_losses_and_gradients_are_the_global_batch_ones(depth_loss):
    import threading

    from hydranet.losses import build_weighting

    tasks = [
        spec(
            name="segm",
            kind="segmentation",
            classes=3,
            loss_options={"class_weights": [1.0, 2.0, 0.5], "label_smoothing": 0.1},
        ),
        spec(name="depth", kind="depth", loss=depth_loss),
        spec(name="normals", kind="normals"),
        spec(name="size", kind="regression", outputs=2, loss="mse"),
    ]
    g = torch.Generator().manual_seed(0)
    n = 4
    preds = {
        "segm": torch.randn(n, 3, 2, 3, generator=g),
        "depth": torch.rand(n, 1, 2, 3, generator=g) + 0.5,
        "normals": torch.randn(n, 3, 2, 3, generator=g),
        "size": torch.randn(n, 2, generator=g),
    }
    depth = torch.rand(n, 1, 2, 3, generator=g) + 0.5
    depth[2:, :, 0] = 0  # the second rank has fewer valid depth pixels
    batch = {
        "targets": {
            "segm": torch.randint(0, 3, (n, 2, 3), generator=g),
            "depth": depth,
            "normals": torch.nn.functional.normalize(torch.randn(n, 3, 2, 3, generator=g), dim=1),
            "size": torch.tensor([[1.0, NAN], [0.5, 2.0], [NAN, NAN], [3.0, 1.0]]),
        },
        "present": {"segm": torch.tensor([True, True, False, False])},
    }  # only rank 0 has segm

    def run(pred_slice, batch_slice, reduction=None):
        outputs = {k: v[pred_slice].clone().requires_grad_() for k, v in preds.items()}
        sub = {
            "targets": {k: v[batch_slice] for k, v in batch["targets"].items()},
            "present": {k: v[batch_slice] for k, v in batch["present"].items()},
        }
        losses = compute_losses(outputs, sub, tasks, reduction)
        weighting = build_weighting("uncertainty", tasks, initial_log_vars=[0.1, -0.2, 0.3, 0.0])
        total, _ = weighting(losses)
        total.backward()
        return (
            {k: float(v.detach()) for k, v in losses.items()},
            {k: v.grad for k, v in outputs.items()},
            {k: p.grad for k, p in weighting.log_vars.items()},
        )

    full_losses, full_grads, full_lv = run(slice(None), slice(None))
    world, group, results = 2, _Group(2), {}
    threads = [
        threading.Thread(
            target=lambda r=r: results.__setitem__(
                r, run(slice(2 * r, 2 * r + 2), slice(2 * r, 2 * r + 2), group.rank(r))
            )
        )
        for r in range(world)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in range(world):
        losses, grads, lv = results[r]
        assert losses == pytest.approx(full_losses, rel=1e-6)  # segm too, on the rank without its labels
        for name in preds:  # DDP averages: (1/W) sum over ranks of W x the global gradient's share
            assert torch.allclose(grads[name] / world, full_grads[name][2 * r : 2 * r + 2], atol=1e-7), (r, name)
        for name, grad in lv.items():  # the log-variances get the single-process gradient on every rank
            assert float(grad) == pytest.approx(float(full_lv[name]), rel=1e-6), (r, name)
