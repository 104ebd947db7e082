"""Gradient-level methods, FAMO and RLW: each against its published rule on fixed Jacobians
(hand-computed, or the defining optimisation solved with scipy), then one training step of the
tiny model per method, and the exactness of the gradient the shared part receives."""

import math
import sys

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from support import tiny_config

pytest.importorskip("torchjd")

from hydranet.errors import ConfigError  # noqa: E402
from hydranet.losses import STRATEGIES, build_weighting, compute_losses  # noqa: E402
from hydranet.losses.aggregators import AGGREGATORS, build_aggregator  # noqa: E402
from hydranet.models import build_model  # noqa: E402

GRADIENT = list(AGGREGATORS)


def aggregate(name: str, jac, **options) -> np.ndarray:
    """d = J^T w with w from the method's Gramian rule (what the trainer applies)."""
    J = torch.tensor(jac, dtype=torch.float64)
    entry = AGGREGATORS[name]
    weights = build_aggregator(name, J.shape[0], {**entry.options, **options})(J @ J.T)
    return (weights.double() @ J).numpy()


CONFLICT = [[1.0, 0.0], [-1.0, 1.0]]  # g1 . g2 = -1
THREE = [[1.0, 0.2, 0.0], [-0.6, 1.0, 0.3], [0.1, -0.4, 1.2]]


def test_pcgrad_projects_a_conflicting_pair_and_leaves_an_agreeing_pair():
    # g1' = g1 - (g1.g2)/|g2|^2 g2 = (0.5, 0.5); g2' = g2 - (g2.g1)/|g1|^2 g1 = (0, 1); sum (0.5, 1.5)
    assert aggregate("pcgrad", CONFLICT) == pytest.approx([0.5, 1.5])
    assert aggregate("pcgrad", [[1.0, 0.0], [1.0, 1.0]]) == pytest.approx([2.0, 1.0])  # no conflict: the sum


def test_mgda_two_task_closed_form():
    # min-norm point of the segment: gamma = (g2 - g1).g2 / |g1 - g2|^2 clipped to [0, 1]
    rng = np.random.default_rng(0)
    for jac in [np.array(CONFLICT), rng.normal(size=(2, 5)), np.array([[1.0, 0.0], [3.0, 0.1]])]:
        g1, g2 = jac
        gamma = np.clip((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2)), 0, 1)
        assert aggregate("mgda", jac) == pytest.approx(gamma * g1 + (1 - gamma) * g2, abs=1e-5)
    assert aggregate("mgda", CONFLICT) == pytest.approx([0.2, 0.4], abs=1e-6)


def test_upgrad_never_conflicts_and_is_the_mean_without_conflict():
    for jac in (CONFLICT, THREE):
        d = aggregate("upgrad", jac)
        assert (np.array(jac) @ d >= -1e-6).all()  # no task's loss increases to first order
    agreeing = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.2, 0.1, 1.0]])  # all dot products > 0
    assert aggregate("upgrad", agreeing) == pytest.approx(agreeing.mean(0), abs=1e-5)


def _dual_cone_projection(jac: np.ndarray, target: np.ndarray) -> np.ndarray:
    cons = [{"type": "ineq", "fun": lambda d, g=g: g @ d} for g in jac]
    res = minimize(lambda d: ((d - target) ** 2).sum(), target, constraints=cons, method="SLSQP", tol=1e-12)
    return res.x


def test_dualproj_is_the_mean_projected_onto_the_dual_cone():
    jac = np.array([[1.0, 0.0], [-2.0, 0.1]])  # mean (-0.5, 0.05) conflicts with g1
    # abs 1e-3: torchjd's projector adds 1e-4 to the Gramian's diagonal for a stable solve
    assert aggregate("dualproj", jac) == pytest.approx(_dual_cone_projection(jac, jac.mean(0)), abs=1e-3)
    assert aggregate("dualproj", CONFLICT) == pytest.approx([0.0, 0.5], abs=1e-6)  # the mean is in the cone


@pytest.mark.parametrize("jac", [CONFLICT, THREE])
def test_cagrad_solves_its_defining_problem(jac):
    # max_d min_i g_i.d  s.t.  |d - g0| <= c |g0|,  g0 the mean gradient (Liu et al. 2021, eq. 4)
    jac, c = np.array(jac), 0.4
    g0 = jac.mean(0)
    radius = c * np.linalg.norm(g0)
    cons = [{"type": "ineq", "fun": lambda x, g=g: g @ x[:-1] - x[-1]} for g in jac]
    cons.append({"type": "ineq", "fun": lambda x: radius**2 - ((x[:-1] - g0) ** 2).sum()})
    res = minimize(lambda x: -x[-1], np.append(g0, 0.0), constraints=cons, method="SLSQP", tol=1e-12)
    d = aggregate("cagrad", jac, c=c)
    assert np.linalg.norm(d - g0) <= radius + 1e-4
    assert (jac @ d).min() == pytest.approx(res.x[-1], abs=1e-4)
    assert d == pytest.approx(res.x[:-1], abs=1e-3)


def test_nash_mtl_is_the_bargaining_solution():
    # d maximises sum_i log(g_i . d) on the unit ball; its weights solve G alpha = 1 / alpha
    # (Navon et al. 2022, Claim 3.1) with G the Gramian normalised by its norm, as the paper's code.
    jac = np.array([[1.0, 0.2, 0.0], [0.3, 1.0, 0.1], [0.0, 0.4, 2.0]])
    d = aggregate("nash_mtl", jac, max_norm=0.0, optim_niter=200)
    res = minimize(
        lambda u: -np.log(jac @ u).sum(),
        jac.mean(0) / np.linalg.norm(jac.mean(0)),
        constraints=[{"type": "eq", "fun": lambda u: u @ u - 1}],
        method="SLSQP",
        tol=1e-12,
    )
    assert d / np.linalg.norm(d) == pytest.approx(res.x, abs=1e-3)
    gram = jac @ jac.T
    alpha = np.linalg.lstsq(jac.T, d, rcond=None)[0] * math.sqrt(np.linalg.norm(gram))
    assert gram / np.linalg.norm(gram) @ alpha == pytest.approx(1 / alpha, rel=1e-2)


def test_imtl_g_has_equal_projections_on_every_unit_gradient():
    # IMTL-G (Liu et al. 2021): d . g_i / |g_i| is the same for every task
    for jac in (np.array(CONFLICT), np.array(THREE)):
        d = aggregate("imtl_g", jac)
        proj = jac @ d / np.linalg.norm(jac, axis=1)
        assert proj == pytest.approx(np.full(len(jac), proj[0]), rel=1e-5) and proj[0] > 0


def test_aligned_mtl_rescales_orthogonal_gradients_to_the_smallest():
    # orthogonal rows of norms 1 and 2: singular values 1 and 2 both aligned to the smallest (1),
    # the update is the mean of the rescaled rows: ((1, 0) + (0, 1)) / 2
    assert aggregate("aligned_mtl", [[1.0, 0.0], [0.0, 2.0]]) == pytest.approx([0.5, 0.5], abs=1e-6)


def test_famo_weights_give_the_gradient_of_its_log_objective():
    famo = build_weighting("famo", ["a", "b"])
    with torch.no_grad():
        famo.logits["a"].fill_(0.3)
    theta = torch.tensor([1.5, 0.5], requires_grad=True)
    losses = {"a": theta[0] ** 2, "b": 2 * theta[1] ** 2}
    total, _ = famo(losses)
    (grad,) = torch.autograd.grad(total, theta, retain_graph=True)
    z = torch.softmax(torch.tensor([0.3, 0.0]), 0)
    L = torch.stack([losses["a"], losses["b"]])
    c = (z / L.detach()).sum()
    (expected,) = torch.autograd.grad((z * L.log()).sum() / c, theta)
    assert torch.allclose(grad, expected)


def test_famo_moves_weight_towards_the_task_that_improves_least():
    famo = build_weighting("famo", ["a", "b"], gamma=0.0)
    famo.famo_logit_step({"a": torch.tensor(1.0), "b": torch.tensor(1.0)})
    assert famo.logits["a"].grad is None  # nothing to compare with yet
    deltas = famo.famo_logit_step({"a": torch.tensor(0.5), "b": torch.tensor(1.0)})
    # d(sum delta_i z_i)/d xi_a = z_a (delta_a - sum_j z_j delta_j) = 0.5 (log 2 - 0.5 log 2)
    assert deltas["a"] == pytest.approx(math.log(2), rel=1e-6)
    assert float(famo.logits["a"].grad) == pytest.approx(0.25 * math.log(2), rel=1e-5)
    assert float(famo.logits["b"].grad) == pytest.approx(-0.25 * math.log(2), rel=1e-5)


def test_rlw_draws_fresh_weights_on_the_simplex():
    rlw = build_weighting("rlw", ["a", "b", "c"])
    losses = {"a": torch.tensor(1.0), "b": torch.tensor(1.0), "c": torch.tensor(1.0)}
    torch.manual_seed(0)
    first = [r["weight"] for r in rlw(losses)[1].values()]
    second = [r["weight"] for r in rlw(losses)[1].values()]
    torch.manual_seed(0)
    again = [r["weight"] for r in rlw(losses)[1].values()]
    assert sum(first) == pytest.approx(1.0) and min(first) > 0 and first != second and first == again
    assert set(rlw({"a": torch.tensor(2.0)})[1]) == {"a"}


def test_option_errors_name_the_method_and_the_extra(monkeypatch):
    with pytest.raises(ConfigError, match="nash_mtl is invariant"):
        build_weighting("nash_mtl", [{"name": "d", "kind": "depth"}], loss_scaling="uncertainty")
    with pytest.raises(ConfigError, match="loss.options.alpha: unknown field"):
        build_weighting("cagrad", ["a", "b"], alpha=1)
    with pytest.raises(ConfigError, match="loss.options.mode: got 'encoder'"):
        build_weighting("upgrad", ["a", "b"], mode="encoder")
    monkeypatch.setitem(sys.modules, "torchjd.aggregation", None)
    with pytest.raises(ConfigError, match=r"hydranet\[mtl\]"):
        build_weighting("upgrad", ["a", "b"])


TASKS = [
    {"name": "segm", "kind": "segmentation", "classes": 3},
    {"name": "depth", "kind": "depth"},
    {"name": "maker", "kind": "classification", "classes": 3},
]


def _batch():
    g = torch.Generator().manual_seed(0)
    targets = {
        "segm": torch.randint(0, 3, (2, 32, 32), generator=g),
        "depth": torch.rand(2, 1, 32, 32, generator=g) + 0.5,
        "maker": torch.tensor([0, 2]),
    }
    return {"image": torch.randn(2, 3, 32, 32, generator=g), "targets": targets}


@pytest.mark.parametrize("on", ["representation", "shared_params"])
def test_the_shared_part_receives_exactly_the_aggregated_gradient(on, one_thread):
    torch.manual_seed(0)
    model = build_model(tiny_config(tasks=TASKS, width=8))
    weighting = build_weighting("mgda", TASKS, mode=on)
    weighting.bind(model)
    batch = _batch()
    losses = compute_losses(model(batch["image"]), batch, model.tasks)
    total, _ = weighting(losses)
    targets = weighting._targets()
    rows = []
    for name in ("segm", "depth", "maker"):
        grads = torch.autograd.grad(losses[name], targets, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(t) if g is None else g).reshape(-1) for t, g in zip(targets, grads)]))
    jac = torch.stack(rows).double()
    expected = build_aggregator("mgda", 3, {})(jac @ jac.T).double() @ jac
    weighting.before_backward(losses, [], grad_scale=4.0)  # e.g. an AMP loss scale
    seen = {}
    for i, t in enumerate(targets):
        if on == "representation":  # a later hook sees what the method's hook passes on
            t.register_hook(lambda g, i=i: seen.update({i: g.reshape(-1)}))
    (4.0 * total).backward(retain_graph=True)
    got = torch.cat([seen[i] for i in range(len(targets))] if seen else [p.grad.reshape(-1) for p in targets])
    got = got.double()
    if on == "representation":
        assert len(targets) == 2  # the decoder output and the view of the global feature
    scale = float(expected.abs().max())  # float32 gradients: compare to 1e-4 of the largest entry
    assert torch.allclose(got, 4.0 * expected, rtol=0, atol=4e-4 * scale), float((got - 4.0 * expected).abs().max())
    head = model.heads["maker"]  # heads keep their own task's gradient
    (own,) = torch.autograd.grad(losses["maker"], [next(head.parameters())], retain_graph=True)
    assert torch.allclose(4.0 * own, next(head.parameters()).grad, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", GRADIENT + ["famo", "rlw"])
def test_one_training_step_of_the_tiny_model(name, tmp_path, one_thread):
    from hydranet.config import load_config
    from hydranet.training import apply_overrides, train

    options = "{mode: shared_params}" if name == "pcgrad" else "{}"
    cfg = load_config(
        apply_overrides(
            load_config("synthetic"),
            [
                "model.encoder_options={width_mult: 0.35}",
                "model.width=8",
                "data.train.num_samples=2",
                "data.train.size=[32,32]",
                "data.train.transforms={size: [32, 32]}",
                "data.val=null",
                "train.steps=2",
                "train.batch_size=2",
                "train.plots=false",
                "train.tensorboard=false",
                "loss.gradient_normalization=true",
                f"loss.weighting={name}",
                f"loss.options={options}",
            ],
        )
    )
    summary = train(cfg, tmp_path / name, progress=False)
    assert summary["status"] == "completed" and summary["step"] == 2
    assert name in STRATEGIES
