"""Metric accumulators against answers worked out by hand."""

import math

import pytest
import torch

from hydranet.errors import ConfigError
from hydranet.evaluation import MultiTaskMetrics, build_metrics, format_table
from hydranet.kinds.depth import depth_crop_mask
from hydranet.losses import denormalize_prediction
from hydranet.tasks import parse_task

IGN = 255


def one_hot_logits(labels, classes):
    """N x H x W labels -> N x C x H x W logits whose argmax is the label."""
    return torch.nn.functional.one_hot(labels, classes).permute(0, 3, 1, 2).float()


# ------------------------------------------------------------------ segmentation

# Two batches of one 2 x 3 label map each (3 classes, 255 = ignore).
SEG_A_T = torch.tensor([[[0, 0, 1], [1, 2, IGN]]])
SEG_A_P = torch.tensor([[[0, 1, 1], [1, 2, 2]]])
SEG_B_T = torch.tensor([[[2, 2, 2], [2, 0, 1]]])
SEG_B_P = torch.tensor([[[2, 2, 0], [0, 0, 0]]])
# (gt, pred) pairs. A: (0,0) (0,1) (1,1) (1,1) (2,2) [the 255 pixel is dropped]
#                   B: (2,2) (2,2) (2,0) (2,0) (0,0) (1,0)
# Confusion matrix over both (rows = gt, cols = pred):
#   gt 0: [2, 1, 0]    gt 1: [1, 2, 0]    gt 2: [2, 0, 3]
# gt totals 3, 3, 5; pred totals 5, 3, 3; 11 pixels, 7 correct.
# IoU0 = 2 / (3 + 5 - 2) = 1/3, IoU1 = 2 / (3 + 3 - 2) = 1/2, IoU2 = 3 / (5 + 3 - 3) = 3/5
# mIoU = (1/3 + 1/2 + 3/5) / 3 = 43/90 = 0.4778
# pixel acc = 7/11; mean class acc = (2/3 + 2/3 + 3/5) / 3 = 29/45
# Per batch instead: A's mIoU = (1/2 + 2/3 + 1) / 3 = 13/18, B's = (1/4 + 0 + 1/2) / 3 = 1/4,
# whose mean 35/72 = 0.4861 is NOT the set's mIoU.
SEG_CM = [[2, 1, 0], [1, 2, 0], [2, 0, 3]]


def seg_spec(classes=3, **kw):
    return parse_task({"name": "segm", "kind": "segmentation", "classes": classes, **kw})


def test_segmentation_confusion_matrix_accumulates_over_batches():
    acc = build_metrics([seg_spec(class_names=["floor", "wall", "chair"])])["segm"]
    acc.update(one_hot_logits(SEG_A_P, 3), SEG_A_T)
    acc.update(one_hot_logits(SEG_B_P, 3), SEG_B_T)
    assert acc.confusion.tolist() == SEG_CM
    r = acc.compute()
    assert r["miou"] == pytest.approx(43 / 90)
    assert r["pixel_acc"] == pytest.approx(7 / 11)
    assert r["mean_acc"] == pytest.approx(29 / 45)
    assert r["iou/floor"] == pytest.approx(1 / 3)
    assert r["iou/wall"] == pytest.approx(1 / 2)
    assert r["iou/chair"] == pytest.approx(3 / 5)
    assert r["samples"] == 2

    # Averaging per-batch mIoU gives a different (wrong) answer.
    per_batch = []
    for p, t in ((SEG_A_P, SEG_A_T), (SEG_B_P, SEG_B_T)):
        one = build_metrics([seg_spec()])["segm"]
        one.update(p, t)  # label maps are accepted as predictions too
        per_batch.append(one.compute()["miou"])
    assert per_batch == pytest.approx([13 / 18, 1 / 4])
    assert sum(per_batch) / 2 == pytest.approx(35 / 72)
    assert abs(sum(per_batch) / 2 - r["miou"]) > 0.008

    acc.reset()
    assert acc.confusion.sum() == 0 and acc.compute() == {"samples": 0}


def test_segmentation_absent_classes_and_samples_are_excluded():
    # A 4th class that is never labelled nor predicted has union 0: excluded from mIoU.
    acc = build_metrics([seg_spec(classes=4)])["segm"]
    acc.update(one_hot_logits(SEG_A_P, 4), SEG_A_T)
    # This batch's second sample has no segmentation label: its garbage must not count.
    t = torch.cat([SEG_B_T, torch.full_like(SEG_B_T, 3)])
    p = torch.cat([SEG_B_P, torch.zeros_like(SEG_B_P)])
    acc.update(one_hot_logits(p, 4), t, torch.tensor([True, False]))
    r = acc.compute()
    assert acc.confusion[:3, :3].tolist() == SEG_CM and acc.confusion[3].sum() == 0
    assert r["miou"] == pytest.approx(43 / 90)
    assert "iou/3" not in r and r["iou/0"] == pytest.approx(1 / 3)
    assert r["samples"] == 2


def test_segmentation_rejects_out_of_range_labels():
    acc = build_metrics([seg_spec()])["segm"]
    with pytest.raises(ValueError, match="outside 0..2"):
        acc.update(one_hot_logits(SEG_A_P, 3), torch.tensor([[[0, 0, 7], [1, 2, IGN]]]))
    with pytest.raises(ValueError, match="spatial size"):
        acc.update(torch.zeros(1, 3, 4, 6), SEG_A_T)


# ------------------------------------------------------------------------- depth


def depth_spec(**options):
    return parse_task({"name": "depth", "kind": "depth", "options": options})


def test_depth_errors_by_hand_over_two_batches():
    # Batch 1, one 2 x 2 image: GT [[2, 4], [0, NaN]] -> only the 2 and the 4 are valid.
    #   pixel a: d = 1.5, g = 2: |d-g|/g = 0.25, (d-g)^2/g = 0.125, (d-g)^2 = 0.25,
    #            (ln 1.5 - ln 2)^2 = ln(4/3)^2 = 0.0827610, |log10(4/3)| = 0.1249387,
    #            max ratio 4/3 = 1.333: not < 1.25, < 1.5625, < 1.953
    #   pixel b: d = 4.5, g = 4: 0.125, 0.0625, 0.25, ln(1.125)^2 = 0.0138728,
    #            log10(1.125) = 0.0511525, ratio 1.125 < 1.25
    # Batch 2, two 1 x 2 images; the second has no depth label (ignored).
    #   pixel c: d = 1.8, g = 1: 0.8, 0.64, 0.64, ln(1.8)^2 = 0.3454931, 0.2552725,
    #            ratio 1.8: only < 1.953
    #   pixel d: raw -3 -> d = 3 (abs), g = 1: 2, 4, 4, ln(3)^2 = 1.2069490, 0.4771213,
    #            ratio 3: none
    # Totals over the 4 valid pixels:
    #   abs_rel = (0.25 + 0.125 + 0.8 + 2) / 4 = 0.79375
    #   sq_rel  = (0.125 + 0.0625 + 0.64 + 4) / 4 = 1.206875
    #   rmse    = sqrt((0.25 + 0.25 + 0.64 + 4) / 4) = sqrt(1.285) = 1.1335784
    #   rmse_log = sqrt((0.0827610 + 0.0138728 + 0.3454931 + 1.2069490) / 4) = 0.6420822
    #   log10   = (0.1249387 + 0.0511525 + 0.2552725 + 0.4771213) / 4 = 0.2271213
    #   delta1 = 1/4, delta2 = 2/4, delta3 = 3/4
    # (Per-batch RMSEs 0.5 and 1.5232 average to 1.0116, not 1.1336.)
    acc = build_metrics([depth_spec(average="pixel")])["depth"]
    acc.update(torch.tensor([[[[1.5, 4.5], [7.0, 7.0]]]]), torch.tensor([[[[2.0, 4.0], [0.0, float("nan")]]]]))
    acc.update(
        torch.tensor([[[[1.8, -3.0]]], [[[0.0, 0.0]]]]),
        torch.tensor([[[[1.0, 1.0]]], [[[5.0, 5.0]]]]),
        torch.tensor([True, False]),
    )
    r = acc.compute()
    assert r["pixels"] == 4 and r["samples"] == 2
    assert r["abs_rel"] == pytest.approx(0.79375)
    assert r["sq_rel"] == pytest.approx(1.206875)
    assert r["rmse"] == pytest.approx(1.1335784, abs=1e-6)
    assert r["rmse_log"] == pytest.approx(0.6420822, abs=1e-6)
    assert r["log10"] == pytest.approx(0.2271213, abs=1e-6)
    assert (r["delta1"], r["delta2"], r["delta3"]) == pytest.approx((0.25, 0.5, 0.75))


def test_depth_cap_clamp_and_median_scaling():
    # max_depth 10: the GT of 12 m is excluded; the prediction 15 is clamped to 10
    # (GT 8: abs_rel 2/8 = 0.25); the prediction 0 is clamped to min_depth 0.001
    # (GT 2: abs_rel 1.999/2 = 0.9995). Mean over 2 pixels = 0.62475.
    acc = build_metrics([depth_spec(max_depth=10)])["depth"]
    acc.update(torch.tensor([[[[15.0, 0.0, 3.0]]]]), torch.tensor([[[[8.0, 2.0, 12.0]]]]))
    r = acc.compute()
    assert r["pixels"] == 2
    assert r["abs_rel"] == pytest.approx(0.62475)

    # Median scaling: GT medians 4 vs prediction 2 -> x2 -> perfect.
    acc = build_metrics([depth_spec(median_scaling=True)])["depth"]
    acc.update(torch.tensor([[[[1.0, 2.0, 3.0]]]]), torch.tensor([[[[2.0, 4.0, 6.0]]]]))
    r = acc.compute()
    assert r["abs_rel"] == pytest.approx(0.0, abs=1e-7) and r["delta1"] == 1.0


def test_depth_crop_masks_select_rows_and_cols():
    # Garg on 10 x 20: rows int(4.08)=4 .. int(9.92)=9, cols int(0.72)=0 .. int(19.28)=19
    m = depth_crop_mask("garg", 10, 20)
    expect = torch.zeros(10, 20, dtype=torch.bool)
    expect[4:9, 0:19] = True
    assert torch.equal(m, expect)
    # Eigen on 10 x 20: rows int(3.32)=3 .. int(9.14)=9
    expect = torch.zeros(10, 20, dtype=torch.bool)
    expect[3:9, 0:19] = True
    assert torch.equal(depth_crop_mask("eigen", 10, 20), expect)
    # KITTI 375 x 1242 Garg crop = [153:371, 44:1197] as in the reference code.
    m = depth_crop_mask("garg", 375, 1242)
    rows, cols = m.any(1).nonzero().reshape(-1), m.any(0).nonzero().reshape(-1)
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (153, 371, 44, 1197)
    assert int(m.sum()) == (371 - 153) * (1197 - 44)
    # NYU: 45:471, 41:601 on 480 x 640; on 48 x 64: 4.5->5 .. 47.1->47, 4.1->4 .. 60.1->60
    m = depth_crop_mask("nyu", 480, 640)
    assert int(m.sum()) == 426 * 560 and m[45, 41] and not m[44, 41] and not m[45, 601]
    expect = torch.zeros(48, 64, dtype=torch.bool)
    expect[5:47, 4:60] = True
    assert torch.equal(depth_crop_mask("nyu", 48, 64), expect)
    assert depth_crop_mask(None, 3, 4).all()
    with pytest.raises(ConfigError):
        build_metrics([depth_spec(crop="bogus")])


def test_depth_crop_applies_in_update():
    # 10 x 20 image with Garg crop: only rows 4..8, cols 0..18 count (5 x 19 = 95 pixels);
    # prediction is perfect inside and off by 1 m outside.
    gt = torch.full((1, 1, 10, 20), 2.0)
    pred = gt + 1.0
    inside = depth_crop_mask("garg", 10, 20)
    pred[0, 0][inside] = 2.0
    acc = build_metrics([depth_spec(crop="garg", max_depth=80)])["depth"]
    acc.update(pred, gt)
    r = acc.compute()
    assert r["pixels"] == 95 and r["rmse"] == 0.0


# ----------------------------------------------------------------------- normals


def normals_spec(**options):
    return parse_task({"name": "normals", "kind": "normals", "options": options})


def test_normals_angles_by_hand():
    s10, c10 = math.sin(math.radians(10)), math.cos(math.radians(10))
    # Batch 1 (1 x 3 x 1 x 5): pixel angles 0, 90, 45 deg; a zero target and a NaN target
    # (invalid, ignored). Raw predictions are not unit length (they are normalised).
    pred1 = torch.tensor([[0, 0, 2.0], [5.0, 0, 0], [1.0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 0]]).T
    gt1 = torch.tensor([[0, 0, 1.0], [0, 0, 1.0], [0, 0, 2.0], [0, 0, 0], [float("nan"), 0, 1]]).T
    # Batch 2: a 10 deg pixel, plus an absent sample (ignored).
    pred2 = torch.tensor([[[s10, 0, c10]], [[1.0, 0, 0]]]).permute(0, 2, 1)  # 2 x 3 x 1
    gt2 = torch.tensor([[[0, 0, 1.0]], [[0, 0, 1.0]]]).permute(0, 2, 1)
    acc = build_metrics([normals_spec()])["normals"]
    acc.update(pred1[None, :, None], gt1[None, :, None])
    acc.update(pred2[..., None], gt2[..., None], torch.tensor([True, False]))
    r = acc.compute()
    # angles 0, 90, 45, 10: mean 36.25; median (10 + 45) / 2 = 27.5 (to half a bin)
    assert r["pixels"] == 4 and r["samples"] == 2
    assert r["mean_angle"] == pytest.approx(36.25, abs=1e-4)
    assert r["median_angle"] == pytest.approx(27.5, abs=0.0051)
    assert r["within_11.25"] == 0.5  # 0, 10
    assert r["within_22.5"] == 0.5
    assert r["within_30"] == 0.5
    # Odd count: drop the 10 deg pixel -> median is the 45 deg pixel's bin centre.
    acc.reset()
    acc.update(pred1[None, :, None], gt1[None, :, None])
    r = acc.compute()
    assert r["mean_angle"] == pytest.approx(45.0, abs=1e-4)
    assert r["median_angle"] == pytest.approx(45.0, abs=0.0051)
    assert r["within_11.25"] == pytest.approx(1 / 3)


def test_normals_histogram_median_matches_exact_median():
    torch.manual_seed(0)
    pred = torch.randn(2, 3, 7, 9)
    gt = torch.randn(2, 3, 7, 9)
    acc = build_metrics([normals_spec()])["normals"]
    acc.update(pred[:1], gt[:1])
    acc.update(pred[1:], gt[1:])
    p = torch.nn.functional.normalize(pred.double(), dim=1)
    g = torch.nn.functional.normalize(gt.double(), dim=1)
    ang = torch.rad2deg(torch.acos((p * g).sum(1).clamp(-1, 1))).reshape(-1)
    r = acc.compute()
    assert r["median_angle"] == pytest.approx(float(ang.quantile(0.5)), abs=0.0051)
    assert r["mean_angle"] == pytest.approx(float(ang.mean()), abs=1e-4)


# ---------------------------------------------------------------- classification


def test_classification_top1_top5_present_only():
    spec = parse_task({"name": "maker", "kind": "classification", "classes": 6})
    acc = build_metrics([spec])["maker"]
    logits = torch.tensor(
        [
            [0.0, 1, 9, 2, 3, 4],  # target 2: top-1 hit
            [3.0, 5, 4, 1, 0, 2],  # target 0: ranked 3rd -> top-5 hit only
            [5.0, 4, 3, 2, 1, 0],  # target 5: ranked 6th -> miss
            [0.0, 9, 0, 0, 0, 0],  # absent sample (would be a hit): ignored
        ]
    )
    acc.update(logits[:2], torch.tensor([2, 0]))
    acc.update(logits[2:], torch.tensor([5, 1]), torch.tensor([True, False]))
    r = acc.compute()
    assert r == {"samples": 3, "top1": pytest.approx(1 / 3), "top5": pytest.approx(2 / 3)}
    small = build_metrics([{"name": "c", "kind": "classification", "classes": 3}])["c"]
    small.update(torch.eye(3), torch.tensor([0, 1, 0]))
    assert small.compute() == {"samples": 3, "top1": pytest.approx(2 / 3)}


# -------------------------------------------------------------------- regression


def test_regression_mae_rmse_in_target_units():
    spec = parse_task(
        {
            "name": "size",
            "kind": "regression",
            "outputs": 2,
            "options": {
                "target_mean": [10.0, 100.0],
                "target_std": [2.0, 50.0],
                "output_names": ["diameter", "length"],
            },
        }
    )
    acc = build_metrics([spec])["size"]
    # z = [0, 1] -> y = [10, 150]; target [11, 140] -> errors [-1, 10]
    # z = [1, -1] -> y = [12, 50]; target [12, NaN] -> errors [0, -]
    # third sample absent.
    z = torch.tensor([[0.0, 1.0], [1.0, -1.0], [5.0, 5.0]])
    y = torch.tensor([[11.0, 140.0], [12.0, float("nan")], [0.0, 0.0]])
    assert denormalize_prediction(spec, z[:2]).tolist() == [[10.0, 150.0], [12.0, 50.0]]
    acc.update(z[:1], y[:1])
    acc.update(z[1:], y[1:], torch.tensor([True, False]))
    r = acc.compute()
    assert r["samples"] == 2
    assert r["mae"] == pytest.approx(11 / 3)  # (1 + 0 + 10) / 3 values
    assert r["rmse"] == pytest.approx(math.sqrt(101 / 3))  # (1 + 0 + 100) / 3
    assert r["mae/diameter"] == pytest.approx(0.5)
    assert r["rmse/diameter"] == pytest.approx(math.sqrt(0.5))
    assert r["mae/length"] == pytest.approx(10.0) and r["rmse/length"] == pytest.approx(10.0)


# -------------------------------------------------------------------- multi-task


def test_multitask_update_absent_tasks_and_table():
    tasks = [
        {"name": "segm", "kind": "segmentation", "classes": 3},
        {"name": "depth", "kind": "depth"},
        {"name": "maker", "kind": "classification", "classes": 3},
    ]
    mt = MultiTaskMetrics(tasks)
    outputs = {"segm": one_hot_logits(SEG_A_P, 3), "depth": torch.ones(1, 1, 2, 3), "maker": torch.eye(3)[:1]}
    # Sample dict with flat targets; "maker" has no labels in the batch at all.
    mt.update(
        outputs,
        {
            "image": None,
            "segm": SEG_A_T,
            "depth": torch.full((1, 1, 2, 3), 2.0),
            "present": {"segm": torch.tensor([True]), "depth": torch.tensor([True])},
        },
    )
    # "targets" mapping form; depth absent for this sample.
    mt.update(
        {**outputs, "segm": one_hot_logits(SEG_B_P, 3)},
        {"targets": {"segm": SEG_B_T, "depth": torch.zeros(1, 1, 2, 3)}, "present": {"depth": torch.tensor([False])}},
    )
    res = mt.compute()
    assert res["segm"]["miou"] == pytest.approx(43 / 90)
    assert res["depth"]["abs_rel"] == pytest.approx(0.5) and res["depth"]["samples"] == 1
    assert res["maker"] == {"samples": 0}
    table = format_table(res)
    assert "miou" in table and "0.4778" in table and "(no labels)" in table
    assert "iou/0" in table and "iou/0" not in format_table(res, detail=False)


def test_multitask_resize_predictions():
    mt = MultiTaskMetrics([{"name": "depth", "kind": "depth"}], resize=True)
    mt.update({"depth": torch.full((1, 1, 2, 2), 3.0)}, {"depth": torch.full((1, 1, 8, 8), 3.0)})
    assert mt.compute()["depth"]["pixels"] == 64
    with pytest.raises(ValueError, match="spatial size"):
        MultiTaskMetrics([{"name": "depth", "kind": "depth"}]).update(
            {"depth": torch.ones(1, 1, 2, 2)}, {"depth": torch.ones(1, 1, 8, 8)}
        )


def test_denormalize_regression_scalar_and_aliases():
    z = torch.tensor([[0.0], [1.0], [-2.0]])
    plain = parse_task({"name": "d", "kind": "regression", "outputs": 1})
    assert torch.equal(denormalize_prediction(plain, z), z)
    short = parse_task({"name": "d", "kind": "regression", "outputs": 1, "options": {"mean": 4.0, "std": 0.5}})
    assert denormalize_prediction(short, z).reshape(-1).tolist() == [4.0, 4.5, 3.0]
    with pytest.raises(ConfigError, match=r"options\.target_std: got 0\.0; expected a value > 0"):
        parse_task(
            {"name": "d", "kind": "regression", "outputs": 1, "options": {"target_mean": 0.0, "target_std": 0.0}}
        )


# ------------------------------------------------- per-image depth, directions, selection


def _two_depth_images():
    """Image A: 100 valid pixels at abs rel 0.05; image B: 10 000 at 0.20 (100 x 100).

    A is a 100 x 100 map with only its first row valid (GT 2, prediction 2.1); B has GT 1
    everywhere and prediction 1.2.
    """
    gt = torch.zeros(2, 1, 100, 100)
    gt[0, 0, 0] = 2.0
    gt[1] = 1.0
    pred = torch.where(torch.arange(2).view(2, 1, 1, 1) == 0, torch.full_like(gt, 2.1), torch.full_like(gt, 1.2))
    return pred, gt


def test_depth_average_per_image_against_pooled():
    pred, gt = _two_depth_images()
    image = build_metrics([depth_spec()])["depth"]  # the default
    pixel = build_metrics([depth_spec(average="pixel")])["depth"]
    for acc in (image, pixel):
        acc.update(pred[:1], gt[:1])  # one image per batch: batches do not matter either way
        acc.update(pred[1:], gt[1:])
    r_img, r_pix = image.compute(), pixel.compute()
    assert r_img["average"] == "image" and r_pix["average"] == "pixel"
    assert r_img["abs_rel"] == pytest.approx(0.125)  # (0.05 + 0.20) / 2
    assert r_pix["abs_rel"] == pytest.approx((100 * 0.05 + 10000 * 0.20) / 10100)  # 0.1985
    # RMSE per image is sqrt of that image's mean: (0.1 + 0.2) / 2, pooled sqrt((1 + 400) / 10100)
    assert r_img["rmse"] == pytest.approx(0.15) and r_pix["rmse"] == pytest.approx(math.sqrt(401 / 10100))
    assert r_img["pixels"] == r_pix["pixels"] == 10100
    with pytest.raises(ConfigError, match=r"options\.average: got 'batch'.*'image' or 'pixel'"):
        build_metrics([depth_spec(average="batch")])


DEPTH_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")


def test_nan_depth_prediction_makes_every_metric_nan():
    for average in ("image", "pixel"):
        acc = build_metrics([depth_spec(average=average)])["depth"]
        acc.update(torch.tensor([[[[float("nan"), 2.0]]]]), torch.tensor([[[[2.0, 2.0]]]]))
        r = acc.compute()
        for metric in DEPTH_METRICS:  # delta1 used to read 0.5
            assert math.isnan(r[metric]), (average, metric, r[metric])


def test_every_reported_metric_declares_its_direction():
    from hydranet.kinds.depth import DepthMetrics
    from hydranet.kinds.normals import NormalsMetrics
    from hydranet.kinds.regression import RegressionMetrics
    from hydranet.kinds.segmentation import SegmentationMetrics
    from hydranet.tasks import KINDS

    assert RegressionMetrics.lower_is_better("mae/0")
    assert not SegmentationMetrics.lower_is_better("iou/wall")
    assert not DepthMetrics.lower_is_better("delta1")
    assert NormalsMetrics.lower_is_better("median_angle")
    for name, kind in KINDS.items():  # every kind's default metrics have a direction
        spec = parse_task({"name": "t", "kind": name, **({kind.size_field: 3} if kind.size_field else {})})
        for metric in kind.default_metrics:
            assert isinstance(kind.metrics(spec).lower_is_better(metric), bool), (name, metric)
    tasks = [
        {"name": "segm", "kind": "segmentation", "classes": 3},
        {"name": "depth", "kind": "depth"},
        {"name": "normals", "kind": "normals"},
        {"name": "cls", "kind": "classification", "classes": 7},
        {"name": "reg", "kind": "regression", "outputs": 2},
    ]
    mt = MultiTaskMetrics(tasks)
    batch = {
        "segm": torch.tensor([[[0, 1]]]),
        "depth": torch.ones(1, 1, 1, 2),
        "normals": torch.tensor([[[[0.0, 0.0]], [[0.0, 0.0]], [[1.0, 1.0]]]]),
        "cls": torch.tensor([3]),
        "reg": torch.tensor([[1.0, 2.0]]),
    }
    outputs = {
        "segm": one_hot_logits(torch.tensor([[[0, 1]]]), 3),
        "depth": torch.ones(1, 1, 1, 2),
        "normals": batch["normals"],
        "cls": torch.randn(1, 7),
        "reg": torch.zeros(1, 2),
    }
    mt.update(outputs, batch)
    for task, metrics in mt.compute().items():
        for metric in metrics:
            if metric not in ("samples", "pixels", "average"):
                assert isinstance(mt.lower_is_better(f"{task}/{metric}"), bool)


def test_task_metrics_list_selects_and_rejects_unknown_names():
    spec = {"name": "reg", "kind": "regression", "outputs": 2, "metrics": ["mae"]}
    mt = MultiTaskMetrics([spec])
    mt.update({"reg": torch.zeros(1, 2)}, {"reg": torch.tensor([[1.0, 3.0]])})
    assert mt.compute()["reg"] == {"samples": 1, "mae": 2.0, "mae/0": 1.0, "mae/1": 3.0}
    with pytest.raises(ConfigError, match=r"task 'segm'.*'mIoU'"):
        MultiTaskMetrics([{"name": "segm", "kind": "segmentation", "classes": 3, "metrics": ["mIoU"]}])
    with pytest.raises(ConfigError, match=r"train.monitor.*'reg'.*'median'"):
        mt.lower_is_better("reg/median")
