"""The mlp tier (morelib.train.mlp_head): forward and gradients against torch.nn, MORE with K = 1 = single-source,
uniform λ for identical per-source gradients at any B, epoch choice on calibration NLL, save/load, bad settings."""

import dataclasses

import pytest
import torch

from morelib.backbone.features import PairFeatures
from morelib.core.config import load_config
from morelib.core.errors import ConfigError, RunError
from morelib.study import pipeline
from morelib.synthetic import synthetic
from morelib.train import mlp_head, reward_head
from morelib.train.reward_models import HeadRM, RMKey
from morelib.weighting.losses import batch_grads


def _cfg(**head):
    cfg = load_config("tiny")
    return cfg.train, dataclasses.replace(cfg.head, **{"width": 16, "mlp_epochs": 3, **head}), cfg.more


@pytest.fixture(scope="module")
def bench():
    return synthetic.make_drift_benchmark(3, 8, 96, [0.25, 1.0, 2.0], seed=3, n_calib=64, n_test=64)


def _sequential(head: mlp_head.MlpHead) -> torch.nn.Sequential:
    """An independent torch.nn model with the same weights: (Linear + GELU) per layer, then Linear(width, 1)."""
    mods = []
    for W, b in head.layers:
        lin = torch.nn.Linear(W.shape[1], W.shape[0])
        lin.weight.data.copy_(W)
        lin.bias.data.copy_(b)
        mods += [lin, torch.nn.GELU()]
    out = torch.nn.Linear(head.w.shape[0], 1, bias=False)
    out.weight.data.copy_(head.w[None])
    return torch.nn.Sequential(*mods, out)


@pytest.mark.parametrize("depth", [1, 2])
def test_forward_and_gradients_match_torch_nn(depth):
    torch.manual_seed(0)
    layers, w = mlp_head.init_params(6, 5, depth, seed=1)
    mean, scale = torch.randn(6), torch.rand(6) + 0.5
    head = mlp_head.MlpHead(layers, w, 0.0, mean, scale)
    net = _sequential(head)
    zc, zr = torch.randn(3, 8, 6), torch.randn(3, 8, 6)  # K = 3 sources × B = 8 pairs
    ref = net((zc - mean) / scale).squeeze(-1) - net((zr - mean) / scale).squeeze(-1)
    got = head.reward_diff(PairFeatures(zc.view(-1, 6), zr.view(-1, 6), "x")).view(3, 8)
    torch.testing.assert_close(got, ref.detach(), rtol=1e-6, atol=1e-6)
    # MORE's per-source final-layer gradients: the closed form on trunk differences vs autograd of torch.nn
    trunk_net = net[:-1]
    dh = trunk_net((zc - mean) / scale) - trunk_net((zr - mean) / scale)
    closed = batch_grads(dh.detach(), head.w)[1]
    for k in range(3):
        net.zero_grad()
        torch.nn.functional.softplus(-ref[k]).mean().backward(retain_graph=True)
        torch.testing.assert_close(closed[k], net[-1].weight.grad[0], rtol=1e-5, atol=1e-7)
    # the trunk's gradients of Σ λ_i L_i through mlp_head.trunk vs torch.nn
    lam = torch.tensor([0.2, 0.3, 0.5])
    params = [p.requires_grad_(True) for layer in layers for p in layer] + [w.requires_grad_(True)]
    dh_ours = mlp_head._pair_diff(head, ((zc - mean) / scale).view(-1, 6), ((zr - mean) / scale).view(-1, 6))
    (lam @ torch.nn.functional.softplus(-(dh_ours @ head.w).view(3, 8)).mean(1)).backward()
    net.zero_grad()
    (lam @ torch.nn.functional.softplus(-ref).mean(1)).backward()
    theirs = [p.grad for p in net.parameters()]
    for mine, ref_grad in zip([p.grad for p in params], theirs):
        torch.testing.assert_close(mine, ref_grad.view_as(mine), rtol=1e-5, atol=1e-7)


def test_init_is_torch_nn_linear_range_and_seeded():
    layers, w = mlp_head.init_params(100, 40, 2, seed=0)
    assert layers[0][0].abs().max() <= 0.1 and layers[1][0].abs().max() <= 1 / 40**0.5 and w.abs().max() <= 1 / 40**0.5
    assert torch.equal(mlp_head.init_params(100, 40, 2, seed=0)[1], w)
    assert not torch.equal(mlp_head.init_params(100, 40, 2, seed=1)[1], w)
    assert mlp_head.trainable_parameters(576, 256, 1) == 576 * 256 + 256 + 256
    assert mlp_head.trainable_parameters(10, 4, 2) == sum(
        p.numel()
        for p in _sequential(
            mlp_head.MlpHead(*mlp_head.init_params(10, 4, 2, 0), 0.0, torch.zeros(10), torch.ones(10))
        ).parameters()
    )


def test_more_with_one_source_trains_exactly_as_single(bench):
    tcfg, hcfg, more = _cfg()
    one = {"source1": bench.train["source1"]}
    calib = {"source1": bench.calib["source1"]}
    a = mlp_head.train_mlp(one, "more", tcfg, hcfg, 4, calib, more=more)
    b = mlp_head.train_mlp(one, "single", tcfg, hcfg, 4, calib, more=more)
    for (Wa, ba), (Wb, bb) in zip(a.layers, b.layers):
        assert torch.equal(Wa, Wb) and torch.equal(ba, bb)
    assert torch.equal(a.w, b.w) and torch.equal(a.history["loss"], b.history["loss"])
    assert a.meta["epoch"] == b.meta["epoch"] and (a.history["lam"] == 1).all()


@pytest.mark.parametrize("B", [1, 4, 16, 64])
def test_more_lambda_stays_uniform_when_every_source_has_the_same_gradient(bench, B):
    """Every source holds copies of one pair: each step's per-source batch gradients are identical, at any B."""
    tcfg, hcfg, more = _cfg()
    pair = bench.train["source0"].subset([0] * 64)
    train = {f"s{k}": dataclasses.replace(pair, source=f"s{k}") for k in range(4)}
    calib = {f"s{k}": bench.calib["source0"] for k in range(4)}
    head = mlp_head.train_mlp(train, "more", dataclasses.replace(tcfg, batch_per_source=B), hcfg, 0, calib, more=more)
    assert head.history["lam"].shape == (3 * 64 // B, 4)
    torch.testing.assert_close(head.history["lam"], torch.full_like(head.history["lam"], 0.25), rtol=0, atol=1e-6)


def test_more_lambda_moves_when_sources_differ(bench):
    """The control of the test above: sources with unequal drifts give MORE a non-uniform λ."""
    tcfg, hcfg, more = _cfg()
    head = mlp_head.train_mlp(bench.train, "more", tcfg, hcfg, 0, bench.calib, more=more)
    assert (head.history["lam"] - 1 / 3).abs().max() > 1e-3
    assert torch.allclose(head.history["lam"].sum(1), torch.ones(len(head.history["lam"])))


def test_kept_epoch_is_the_calibration_best_averaged_iterate(bench):
    tcfg, hcfg, more = _cfg(mlp_epochs=4)
    head = mlp_head.train_mlp(bench.train, "multitask", tcfg, hcfg, 0, bench.calib, more=more)
    nll = head.history["calib_nll"]
    assert len(nll) == 4 and head.meta["epoch"] == int(nll.argmin())
    assert mlp_head.calib_nll(head, bench.calib) == pytest.approx(float(nll.min()), abs=1e-6)
    assert not any(p.requires_grad for layer in head.layers for p in layer)


@pytest.mark.parametrize("scheme", ["multitask", "multitask-pooled", "more", "famo", "sizeprop", "tuned", "raw"])
def test_every_scheme_trains_and_seeds_reproduce(bench, scheme):
    tcfg, hcfg, more = _cfg()
    tcfg = dataclasses.replace(tcfg, tuned_step=0.5, tuned_max_points=3)
    a = mlp_head.train_mlp(bench.train, scheme, tcfg, hcfg, 2, bench.calib, more=more)
    b = mlp_head.train_mlp(bench.train, scheme, tcfg, hcfg, 2, bench.calib, more=more)
    assert torch.equal(a.w, b.w) and a.meta["scheme"] == scheme
    if scheme != "raw":
        assert mlp_head.calib_nll(a, bench.calib) < mlp_head.calib_nll(
            mlp_head.train_mlp(bench.train, "raw", tcfg, hcfg, 2, bench.calib), bench.calib
        )


def test_save_load_round_trip_and_linear_loader_refuses(bench, tmp_path):
    tcfg, hcfg, more = _cfg(depth=2)
    head = mlp_head.train_mlp(bench.train, "more", tcfg, hcfg, 0, bench.calib, more=more)
    path = head.save(tmp_path / "m.pt")
    back = mlp_head.load_head(path)
    pf = bench.test["source2"]
    assert isinstance(back, mlp_head.MlpHead) and torch.equal(back.reward_diff(pf), head.reward_diff(pf))
    assert back.meta == head.meta
    with pytest.raises(RunError, match="holds an mlp RM"):
        reward_head.HeadModel.load(path)
    linear = reward_head.train_head(bench.train, "multitask", tcfg, hcfg, 0)
    assert isinstance(mlp_head.load_head(linear.save(tmp_path / "l.pt")), reward_head.HeadModel)


def test_pipeline_fits_the_tier_the_config_names():
    cfg = load_config("tiny", {"head.kind": "mlp", "head.width": 8, "head.mlp_epochs": 2, "seeds": [0]})
    data, _ = pipeline.synthetic_data(cfg)
    heads = pipeline.fit(cfg, data, ["multitask", "more"])
    assert all(isinstance(h, HeadRM) and isinstance(h.head, mlp_head.MlpHead) for h in heads.values())
    assert heads[RMKey("more", seed=0)].reward_diff(None, data.features["source0"]["test"]).shape == (200,)
    linear = load_config("tiny", {"seeds": [0]})
    assert pipeline.fingerprint(cfg) != pipeline.fingerprint(linear)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"head.width": 0}, "'head.width' must be a positive number of hidden units, got 0"),
        ({"head.depth": 0}, r"'head.depth' must be ≥ 1 hidden layer, got 0"),
        ({"head.kind": "cnn"}, "'head.kind' must be one of linear, mlp, got 'cnn'"),
        ({"head.mlp_epochs": 0}, "'head.mlp_epochs' must be positive, got 0"),
        ({"capacity.tiers": ["mlp", "mlp"]}, "'capacity.tiers' must list distinct tiers"),
        ({"capacity.batch_per_source": [16, 0]}, "'capacity.batch_per_source' must list distinct positive"),
        ({"capacity.schemes": ["multitask", "tuned"]}, "'capacity.schemes' must include multitask and more"),
    ],
)
def test_bad_head_and_capacity_settings_fail_clearly(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", override)


def test_mlp_tier_needs_calibration_pairs(bench):
    tcfg, hcfg, more = _cfg()
    with pytest.raises(ConfigError, match="chooses its epoch on calibration pairs"):
        mlp_head.train_mlp(bench.train, "more", tcfg, hcfg, 0, None, more=more)
    with pytest.raises(ConfigError, match="unknown head scheme 'best'"):
        mlp_head.train_mlp(bench.train, "best", tcfg, hcfg, 0, bench.calib)
