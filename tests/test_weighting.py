"""Weighting strategies: totals, reports, learning behaviour, absent tasks, state."""

import math

import pytest
import torch
from torch import nn

from hydranet.errors import ConfigError
from hydranet.losses import (
    DWAWeighting,
    GradNormWeighting,
    UncertaintyWeighting,
    build_weighting,
    weighting_param_group,
)
from hydranet.tasks import parse_task

TASKS = [
    parse_task({"name": "segm", "kind": "segmentation", "classes": 3}),
    parse_task({"name": "depth", "kind": "depth"}),
    parse_task({"name": "size", "kind": "regression", "outputs": 1}),
]


def t(x):
    return torch.tensor(float(x))


def test_equal_and_fixed_totals_and_report():
    total, report = build_weighting("equal", TASKS)({"segm": t(2), "depth": t(3)})
    assert total.item() == 5 and set(report) == {"segm", "depth"}
    assert report["depth"] == {"loss": 3.0, "weight": 1.0, "weighted": 3.0}
    fixed = build_weighting("fixed", TASKS, weights={"depth": 0.1})
    total, report = fixed({"segm": t(2), "depth": t(3)})
    assert total.item() == pytest.approx(2.3) and report["depth"]["weight"] == pytest.approx(0.1)
    assert build_weighting("fixed", TASKS, weights="segm=2,size=0").fixed == {"segm": 2.0, "depth": 1.0, "size": 0.0}
    assert build_weighting("equal", TASKS)({}) == (None, {})


def test_uncertainty_forms_initial_values_and_report():
    uw = build_weighting("uncertainty", TASKS, initial_log_vars="0,1,-1")
    assert {n: p.item() for n, p in uw.log_vars.items()} == {"segm": 0.0, "depth": 1.0, "size": -1.0}
    total, report = uw({"segm": t(2), "depth": t(3)})
    # segm: exp(0) * 2 + 0 ; depth: 0.5 * exp(-1) * 3 + 0.5
    assert total.item() == pytest.approx(2 + 1.5 * math.exp(-1) + 0.5, rel=1e-6)
    assert report["depth"]["weight"] == pytest.approx(0.5 * math.exp(-1))
    assert report["depth"]["sigma2"] == pytest.approx(math.e) and report["depth"]["log_var"] == pytest.approx(1.0)
    assert report["segm"]["weight"] == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        build_weighting("uncertainty", TASKS, initial_log_vars=[0, 0])
    with pytest.raises(ConfigError):
        build_weighting("uncertainty", ["a", "b"])  # kinds unknown
    assert build_weighting("uncertainty", ["a"], forms={"a": "depth"}).forms == {"a": "regression"}


def _optimise_uw(uw, losses, steps, lr=0.05):
    opt = torch.optim.Adam([weighting_param_group(uw, lr)])
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        total, _ = uw(losses)
        total.backward()
        opt.step()


def test_uncertainty_reaches_analytic_optimum():
    tasks = [
        parse_task({"name": "easy", "kind": "depth"}),
        parse_task({"name": "hard", "kind": "regression", "outputs": 1}),
        parse_task({"name": "segm", "kind": "segmentation", "classes": 4}),
    ]
    uw = build_weighting("uncertainty", tasks)
    _optimise_uw(uw, {"easy": t(0.5), "hard": t(4.0), "segm": t(1.5)}, steps=250, lr=0.08)
    s2 = uw.sigma2()
    assert s2["easy"] == pytest.approx(0.5, rel=0.03)  # 1/(2 sigma^2) form: sigma^2 = L
    assert s2["hard"] == pytest.approx(4.0, rel=0.03)
    assert s2["segm"] == pytest.approx(3.0, rel=0.03)  # 1/sigma^2 form: sigma^2 = 2 L
    w = uw.weights()
    assert s2["hard"] > s2["easy"] and w["hard"] < w["easy"]


def test_uncertainty_absent_task_does_not_move_under_adam():
    uw = build_weighting("uncertainty", TASKS)
    opt = torch.optim.Adam([weighting_param_group(uw, 0.1)])
    _optimise_uw_with(opt, uw, {"segm": t(5), "depth": t(0.1)}, steps=5)  # builds Adam momentum for depth
    frozen = uw.log_vars["depth"].item()
    _optimise_uw_with(opt, uw, {"segm": t(5)}, steps=10)
    assert uw.log_vars["depth"].grad is None
    assert uw.log_vars["depth"].item() == frozen
    assert uw.log_vars["size"].item() == 0.0  # never present


def _optimise_uw_with(opt, uw, losses, steps):
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        uw(losses)[0].backward()
        opt.step()


def test_param_group_has_no_weight_decay():
    group = weighting_param_group(build_weighting("uncertainty", TASKS), 0.01)
    assert group["weight_decay"] == 0.0 and group["lr"] == 0.01 and len(group["params"]) == 3
    assert weighting_param_group(build_weighting("equal", TASKS), 0.01)["params"] == []


def _toy(seed=0):
    torch.manual_seed(seed)
    shared = nn.Linear(4, 16)
    heads = nn.ModuleDict({"a": nn.Linear(16, 1), "b": nn.Linear(16, 1)})
    x = torch.randn(64, 4)
    ya = x @ torch.randn(4, 1)
    yb = 20 * torch.tanh(x @ torch.randn(4, 1))  # a much larger loss and gradient
    return shared, heads, x, ya, yb


def _norms(shared, losses, weights):
    out = []
    for name, loss in losses.items():
        g = torch.autograd.grad(loss, list(shared.parameters()), retain_graph=True)
        out.append(weights[name] * torch.sqrt(sum(x.pow(2).sum() for x in g)).item())
    return max(out) / min(out)


def _train_toy(name, steps=30, **options):
    shared, heads, x, ya, yb = _toy()
    gn = build_weighting(name, ["a", "b"], **options)
    opt = torch.optim.Adam(
        [{"params": list(shared.parameters()) + list(heads.parameters()), "lr": 1e-2}, weighting_param_group(gn, 0.05)]
    )

    def losses():
        h = torch.relu(shared(x))
        return {"a": (heads["a"](h) - ya).pow(2).mean(), "b": (heads["b"](h) - yb).pow(2).mean()}

    first = losses()
    ratio_before = _norms(shared, first, {"a": 1.0, "b": 1.0})
    for _ in range(steps):
        ls = losses()
        total, _ = gn(ls)
        opt.zero_grad(set_to_none=True)
        if name == "gradnorm":
            gn.gradnorm_step(ls, list(shared.parameters()))
        total.backward()
        opt.step()
    return gn, first, ratio_before, _norms(shared, losses(), gn.weights())


def test_gradnorm_balances_gradient_norms_on_shared_layer():
    # alpha = 0: the target is the mean weighted gradient norm, i.e. GradNorm equalises the norms
    # (with alpha > 0 it deliberately favours the task that trains slower, see the next test).
    gn, first, ratio_before, ratio_after = _train_toy("gradnorm", alpha=0.0)
    _, _, _, ratio_equal = _train_toy("equal")
    assert ratio_after < 0.5 * ratio_before and ratio_after < 0.5 * ratio_equal
    w = gn.weights()
    assert w["b"] < w["a"]  # b's gradients are ~20x larger
    assert sum(w.values()) == pytest.approx(2.0, rel=1e-5) and min(w.values()) > 0
    assert gn.initial_losses[1].item() == pytest.approx(first["b"].item(), rel=1e-5)  # L_i(0) = own first loss


def test_gradnorm_step_hand_values():
    shared = torch.ones(2, requires_grad=True)
    va, vb = torch.tensor([3.0, 4.0]), torch.tensor([0.6, 0.8])  # gradient norms 5 and 1
    gn = GradNormWeighting(["a", "b"])  # alpha 1.5
    info = gn.gradnorm_step({"a": shared @ va, "b": shared @ vb}, [shared])
    # first call: L(0) recorded, r = (1, 1), targets = mean G = 3; grad = sign(G - target) * norm
    assert info["a"]["target"] == pytest.approx(3.0) and info["b"]["target"] == pytest.approx(3.0)
    assert gn.task_weights["a"].grad.item() == pytest.approx(5.0)
    assert gn.task_weights["b"].grad.item() == pytest.approx(-1.0)
    assert gn.last_gradnorm_loss == pytest.approx(4.0)
    assert shared.grad is None  # the shared parameters' .grad is not populated
    gn.zero_grad(set_to_none=True)
    info = gn.gradnorm_step({"a": 0.5 * (shared @ va), "b": shared @ vb}, [shared])
    # L~ = (0.5, 1), r = (2/3, 4/3), G = (2.5, 1), mean G = 1.75
    ta, tb = 1.75 * (2 / 3) ** 1.5, 1.75 * (4 / 3) ** 1.5
    assert info["a"]["target"] == pytest.approx(ta, rel=1e-5) and info["b"]["target"] == pytest.approx(tb, rel=1e-5)
    assert gn.last_gradnorm_loss == pytest.approx(abs(2.5 - ta) + abs(1 - tb), rel=1e-5)
    assert gn.task_weights["a"].grad.item() == pytest.approx(2.5)
    assert gn.task_weights["b"].grad.item() == pytest.approx(-1.0)


def test_gradnorm_absent_task_weight_untouched():
    shared, heads, x, ya, yb = _toy()
    gn = GradNormWeighting(["a", "b", "c"])
    h = torch.relu(shared(x))
    ls = {"a": (heads["a"](h) - ya).pow(2).mean(), "b": (heads["b"](h) - yb).pow(2).mean()}
    info = gn.gradnorm_step(ls, list(shared.parameters()))
    assert set(info) == {"a", "b"}
    assert gn.task_weights["c"].grad is None and gn.task_weights["a"].grad is not None
    assert torch.isnan(gn.initial_losses[2])


def test_dwa_equal_first_two_epochs_then_favours_slower_task():
    dwa = build_weighting("dwa", ["fast", "slow"])
    assert dwa({"fast": t(1), "slow": t(1)})[1]["slow"]["weight"] == 1.0
    assert dwa.epoch_end({"fast": 1.0, "slow": 1.0}) == {"fast": 1.0, "slow": 1.0}  # weights for epoch 2
    w3 = dwa.epoch_end({"fast": 0.5, "slow": 0.9})  # ratios 0.5 and 0.9, T = 2
    ea, eb = math.exp(0.5 / 2), math.exp(0.9 / 2)
    assert w3["fast"] == pytest.approx(2 * ea / (ea + eb), rel=1e-5)
    assert w3["slow"] == pytest.approx(2 * eb / (ea + eb), rel=1e-5)
    total, report = dwa({"fast": t(1), "slow": t(1)})
    assert report["slow"]["weight"] > report["fast"]["weight"]
    assert total.item() == pytest.approx(2.0, rel=1e-5)
    # state survives a round trip
    other = DWAWeighting(["fast", "slow"])
    other.load_state_dict(dwa.state_dict())
    assert other.weights() == pytest.approx(dwa.weights()) and int(other.epochs_seen) == 2


def test_state_dict_round_trip_uw_and_gradnorm():
    uw = build_weighting("uncertainty", TASKS, initial_log_vars=[0.3, -0.2, 1.0])
    fresh = UncertaintyWeighting(TASKS)
    fresh.load_state_dict(uw.state_dict())
    assert fresh.sigma2() == pytest.approx(uw.sigma2())
    gn = GradNormWeighting(TASKS)
    gn.initial_losses[0] = 2.5
    with torch.no_grad():
        gn.task_weights["segm"].fill_(2.0)
    g2 = GradNormWeighting(TASKS)
    g2.load_state_dict(gn.state_dict())
    assert g2.initial_losses[0].item() == 2.5 and g2.weights() == pytest.approx(gn.weights())


def test_unknown_names_and_options_raise_config_error():
    with pytest.raises(ConfigError, match="uncertainty, fixed, equal, gradnorm, dwa"):
        build_weighting("magic", TASKS)
    with pytest.raises(ConfigError, match="temperature"):
        build_weighting("dwa", TASKS, temp=2)
    with pytest.raises(ConfigError):
        build_weighting("fixed", TASKS, weights={"nope": 1})
    with pytest.raises(KeyError):
        build_weighting("equal", TASKS)({"nope": t(1)})


def test_weighting_experiment_script_runs_and_uw_tracks_scale(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "weighting_experiment.py"
    module_spec = importlib.util.spec_from_file_location("weighting_experiment", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    rows = module.main(
        ["--steps", "15", "--threads", "0", "--log-var-lrs", "0.001,0.1", "--json", str(tmp_path / "rows.json")]
    )
    uw_rows = [r for r in rows if r["strategy"] == "uncertainty" and not r["normalised"]]
    assert len(uw_rows) == 2 and (tmp_path / "rows.json").exists()
    for row in uw_rows:  # the 1000x larger task ends with the larger sigma^2 (smaller weight)
        assert row["sigma2"]["mass"] > row["sigma2"]["length"]
    assert all(math.isfinite(r["mass_mae"]) and math.isfinite(r["length_rel"]) for r in rows)


def test_gradnorm_refuses_torchrun_and_the_others_accept_it():
    from hydranet.errors import ConfigError

    with pytest.raises(ConfigError, match="without torchrun"):
        build_weighting("gradnorm", TASKS).check_distributed(2)
    build_weighting("gradnorm", TASKS).check_distributed(1)
    for name in ("uncertainty", "fixed", "equal", "dwa"):
        build_weighting(name, TASKS).check_distributed(4)
