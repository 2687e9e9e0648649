"""Reward-model training, feature tier: a linear reward head on frozen backbone features (paper §4–5, eqs. 2, 8–9).

r(z) = w·(z − mean)/scale + b on pooled features z[h], standardised with the training features' statistics (b cancels in
every BT loss and stays 0). Each step takes one balanced batch (`morelib.data.sampling.batch_plan`: B pairs per source,
each source resampled to a common size) and minimises
    Σ_i λ_i L_i(w) + ½·l2·‖w‖²,  L_i = mean over source i's pairs of −log σ(r(z_w) − r(z_l)),  l2 = wd·h/N
(wd the head's weight decay, h features, N distinct training pairs: the MAP estimate under a prior w ~ N(0, I/(wd·h)) on
standardised features, a reward-difference scale that depends on neither h nor N) by Adam on closed-form gradients (the
head is linear: no autograd; the L2 term coupled into the gradient as torch.optim.Adam's weight_decay).
The schemes differ only in λ: `multitask` 1/K; `fixed` the given weights normalised to sum 1; `single` [1]; `more` from
`MoreWeighter` on the per-source head gradients (paper §4); the baselines `sizeprop`, `tuned`, `famo`
(`morelib.weighting.baselines`). `multitask-pooled` is the paper's and reference code's MultiTask: random pooled batches
of
K·B pairs, plain batch-mean loss, one history column. `raw` is the untrained, seeded head an HF sequence classifier
starts from (score weights N(0, 0.02), no standardisation).
After Adam every trained head gets a full-batch float64 L-BFGS `polish` to the exact optimum at fixed λ: the scheme's λ,
for MORE and FAMO the mean of their per-step λ over the last epoch (`history["lam_final"]`); `history["grad_norm"]`
(also in `meta`) is the final full-batch gradient norm. How wd and the schedule were chosen, and Adam's measured gap to
the optimum: README.md, "Compute tiers".
Checked in tests/test_reward_head.py: gradients vs autograd, Adam vs torch.optim.Adam, MORE with K = 1 = single,
fixed uniform λ = multitask, seeds, accuracy on the synthetic drift benchmark (morelib.synthetic.synthetic), and a
single
head on real SmolLM2 features within 0.005 nats of test log-loss of an independent scipy L-BFGS optimum.
# NOTE(paper): the paper fine-tunes the whole model (see morelib.train.finetune); this tier trains the head only.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from morelib.backbone.features import PairFeatures
from morelib.core.config import HEAD_SCHEMES, HeadConfig, MoreConfig, TrainConfig
from morelib.core.errors import ConfigError, DataError, RunError, TrainingError
from morelib.data.sampling import POOLED, batch_plan, pooled_plan
from morelib.weighting.baselines import Famo, fixed_weights, simplex_grid, size_proportional
from morelib.weighting.losses import batch_grads
from morelib.weighting.more import MoreWeighter

RAW_INIT_STD = 0.02  # transformers' default initializer_range for the score layer
HEAD_THREADS = 1  # K·B×h matmuls are tiny: one thread beats two busy ones (benchmarks/README.md, levers table)
_ADAM_BETAS, _ADAM_EPS = (0.9, 0.999), 1e-8
POLISH_TOL, POLISH_MAX_ITER = 1e-7, 500  # L-BFGS stops at max |∂/∂w| ≤ this (~15–30 iterations here)
_CHUNK_STEPS = 128  # steps whose batches are gathered at once (128·K·B·h floats)
Callback = Callable[[int, torch.Tensor, torch.Tensor], Any]


@dataclass
class HeadModel:
    """A linear reward head r(z) = w·(z − mean)/scale + b on backbone features z[h], with its training history.

    history: `lam` [steps, K] source weights, `loss` [steps, K] batch BT losses (nats), `acc` [steps, K] batch accuracy,
    `source_names` list[str] of length K. meta: scheme, seed and settings the head was trained with.
    """

    w: torch.Tensor
    b: float
    mean: torch.Tensor
    scale: torch.Tensor
    history: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def reward(self, feats: torch.Tensor) -> torch.Tensor:
        """Rewards [N] of features feats[N, h]."""
        return ((feats.float() - self.mean) / self.scale) @ self.w + self.b

    def reward_diff(self, pf: PairFeatures) -> torch.Tensor:
        """Reward differences r_chosen − r_rejected [N] of a PairFeatures set."""
        return ((pf.chosen.float() - pf.rejected.float()) / self.scale) @ self.w

    def save(self, path: str | Path) -> Path:
        """Write this head as a small torch file (tensors, floats, lists and strings only); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(
            {
                "w": self.w,
                "b": float(self.b),
                "mean": self.mean,
                "scale": self.scale,
                "history": self.history,
                "meta": self.meta,
            },
            tmp,
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> HeadModel:
        """Read a head written by `save`."""
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        if state.get("kind", "linear") != "linear":
            raise RunError(f"{path} holds an {state['kind']} RM, not a linear head (read it with mlp_head.load_head)")
        return cls(state["w"], state["b"], state["mean"], state["scale"], state["history"], state["meta"])


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` torch CPU threads (None: unchanged), restoring the previous count."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def standardizer(train: dict[str, PairFeatures]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [h] and scale [h] (population std; constant dimensions get 1) of every chosen and rejected feature."""
    # Sums of (z − c) in float64 around a sample row c: exact enough with large-mean LM dimensions, and no copy.
    parts = [t for pf in train.values() for t in (pf.chosen, pf.rejected)]
    c = parts[0][0].float()
    s1 = torch.zeros(c.shape[0], dtype=torch.float64)
    s2 = torch.zeros_like(s1)
    for t in parts:
        y = t.float() - c
        s1 += y.sum(0, dtype=torch.float64)
        s2 += (y * y).sum(0, dtype=torch.float64)
    n = sum(t.shape[0] for t in parts)
    shift = s1 / n
    std = (s2 / n - shift * shift).clamp_min(0).sqrt().float()
    mean = shift.float() + c
    return mean, torch.where(std > 1e-6 * std.max().clamp_min(1e-30), std, torch.ones_like(std))


def single_batch(tcfg: TrainConfig, K: int) -> int:
    """Batch of a single-source RM: `train.single_batch`, else K·B on the fine-tuning tier (the paper's 80 = 5 × 16)
    and B on the feature tier (whose head schedule — epochs, lr, L2 — was chosen by CV at B per step)."""
    if tcfg.single_batch is not None:
        return tcfg.single_batch
    return K * tcfg.batch_per_source if tcfg.tier == "finetune" else tcfg.batch_per_source


class _Adam:
    """Adam (Kingma & Ba) on one tensor with coupled L2, as torch.optim.Adam(weight_decay=wd) but without its
    overhead."""

    def __init__(self, w: torch.Tensor, lr: float, wd: float) -> None:
        self.w, self.lr, self.wd = w, lr, wd
        self.m, self.v, self.t = torch.zeros_like(w), torch.zeros_like(w), 0

    def step(self, grad: torch.Tensor) -> None:
        """One update of w in place with gradient grad[h] (+ wd·w)."""
        (b1, b2), self.t = _ADAM_BETAS, self.t + 1
        grad = grad.add(self.w, alpha=self.wd) if self.wd else grad
        self.m.lerp_(grad, 1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (self.v.sqrt() / math.sqrt(1 - b2**self.t)).add_(_ADAM_EPS)
        self.w.addcdiv_(self.m, denom, value=-self.lr / (1 - b1**self.t))


def _check_scheme(
    train: dict[str, PairFeatures],
    scheme: str,
    lam: Sequence[float] | None,
    calib: dict[str, PairFeatures] | None = None,
) -> None:
    """Raise ConfigError for an unknown scheme, a wrong number of sources, λ given to a scheme without λ, or
    `tuned` without calibration features of every training source."""
    if scheme not in HEAD_SCHEMES:
        hint = " ('top' is 'single' on the best source, chosen by the caller)" if scheme == "top" else ""
        raise ConfigError(f"unknown head scheme '{scheme}'{hint}; valid: {', '.join(HEAD_SCHEMES)}")
    if not train:
        raise ConfigError("train_head got no sources: `train` is empty")
    if scheme == "single" and len(train) != 1:
        raise ConfigError(f"scheme 'single' needs exactly one source, got {len(train)}: {list(train)}")
    if (lam is not None) != (scheme == "fixed"):
        raise ConfigError("λ must be given for scheme 'fixed' and only for it" + f" (scheme '{scheme}')")
    if scheme == "tuned" and (calib is None or set(calib) != set(train)):
        raise ConfigError(
            f"scheme 'tuned' needs calibration features of exactly the training sources {list(train)}, "
            f"got {None if calib is None else list(calib)}"
        )
    dims = {pf.chosen.shape[1] for pf in train.values()}
    if len(dims) != 1:
        raise DataError(f"sources have different feature sizes {sorted(dims)}")
    for name, pf in train.items():
        if torch.isfinite(pf.chosen.sum() + pf.rejected.sum()):  # cheap test first: a NaN/inf makes the sum non-finite
            continue
        bad = int((~torch.isfinite(pf.chosen)).any(1).sum() + (~torch.isfinite(pf.rejected)).any(1).sum())
        if bad:
            raise DataError(f"source '{name}' has {bad} feature row(s) with NaN/inf: re-extract its features")


def _raw_head(train: dict[str, PairFeatures], seed: int) -> HeadModel:
    """The untrained head: w ~ N(0, 0.02²) seeded, on unstandardised features."""
    h = next(iter(train.values())).chosen.shape[1]
    w = torch.randn(h, generator=torch.Generator().manual_seed(seed)) * RAW_INIT_STD
    names = list(train)
    empty = torch.zeros(0, len(names))
    history = {"lam": empty, "loss": empty, "acc": empty, "source_names": names}
    return HeadModel(w, 0.0, torch.zeros(h), torch.ones(h), history, {"scheme": "raw", "seed": seed})


def train_head(
    train: dict[str, PairFeatures],
    scheme: str,
    tcfg: TrainConfig,
    hcfg: HeadConfig,
    seed: int,
    lam: Sequence[float] | None = None,
    callback: Callback | None = None,
    calib: dict[str, PairFeatures] | None = None,
    more: MoreConfig | None = None,
    sizes: dict[str, int] | None = None,
) -> HeadModel:
    """Fit a reward head on per-source training features with the given scheme (see module docstring).

    `tcfg`: the batch plan and the baselines' settings; `hcfg`: the head's Adam lr, epochs and weight decay.

    callback(step, lam[K], loss[K]) runs after every step; returning False stops training early.
    `calib` (scheme `tuned` only): per-source calibration features on which the grid's λ is chosen.
    `more` (scheme `more` only): MORE's α and normalisation, default params/default.yaml's `more` section.
    `sizes` (scheme `sizeprop` only): each source's AVAILABLE training pairs, which set λ_i = n_i/Σn (default: the pairs
    in `train`, which a per-source cap makes equal); ConfigError unless it names exactly the training sources.
    Raises TrainingError naming the step and source when a loss becomes NaN/inf.
    """
    with _threads(HEAD_THREADS), torch.no_grad():
        _check_scheme(train, scheme, lam, calib)
        more = more or MoreConfig()
        if scheme == "raw":
            return _raw_head(train, seed)
        if scheme == "tuned":
            return _tuned_head(train, calib, tcfg, hcfg, seed)
        if scheme == "sizeprop":
            n = sizes if sizes is not None else {name: pf.chosen.shape[0] for name, pf in train.items()}
            if set(n) != set(train):
                raise ConfigError(f"sizeprop sizes must name the training sources {list(train)}, got {list(n)}")
            by_size = size_proportional([n[name] for name in train])
            head = train_head(train, "fixed", tcfg, hcfg, seed, by_size, callback)
            head.meta |= {"scheme": "sizeprop", "lam": head.history["lam"][0].tolist()}
            return head
        names = list(train)
        mean, scale = standardizer(train)
        diffs = torch.cat([(pf.chosen.float() - pf.rejected.float()) / scale for pf in train.values()])
        sizes = {n: pf.chosen.shape[0] for n, pf in train.items()}
        offsets = torch.tensor([0] + list(sizes.values())[:-1]).cumsum(0)
        w = torch.zeros(diffs.shape[1])
        l2 = hcfg.weight_decay * diffs.shape[1] / diffs.shape[0]
        adam = _Adam(w, hcfg.lr, l2)
        if scheme == POOLED:  # one pooled group of K·B pairs per step, plain mean BT loss
            codes = pooled_plan(sizes, tcfg.batch_per_source, hcfg.epochs, tcfg.resample_pairs, seed)
            stride = max(sizes.values())
            plan = offsets[codes // stride] + codes % stride
            history = _fit(diffs, plan, "multitask", [POOLED], tcfg, None, callback, adam)
            lam_end = torch.full(
                (len(names),), 1.0 / len(names)
            )  # resampled to one size, the pool weighs sources equally
        else:
            plan = batch_plan(sizes, tcfg.batch_per_source, hcfg.epochs, tcfg.resample_pairs, seed)
            plan = (plan + offsets[None, :, None]).flatten(1)
            history = _fit(diffs, plan, scheme, names, tcfg, lam, callback, adam, more)
            lam_end = history["lam"][-(len(plan) // hcfg.epochs) :].mean(0)  # last epoch's λ (constant unless MORE)
        by_source = diffs.split(list(sizes.values()))
        w.copy_(polish(by_source, w, lam_end, l2))
        grad_norm = full_grad_norm(by_source, w, lam_end, l2)
    history["lam_final"], history["grad_norm"] = lam_end, grad_norm
    meta = {
        "scheme": scheme,
        "seed": seed,
        "head_lr": hcfg.lr,
        "head_epochs": hcfg.epochs,
        "head_weight_decay": hcfg.weight_decay,
        "l2": l2,
        "batch_per_source": tcfg.batch_per_source,
        "grad_norm": grad_norm,
    }
    if scheme == "more":
        meta |= {"alpha": more.alpha, "normalization": more.normalization}
    if scheme == "famo":
        meta |= {"famo_lr": tcfg.famo_lr, "famo_decay": tcfg.famo_decay}
    return HeadModel(w, 0.0, mean, scale, history, meta)


def calib_log_loss(head: HeadModel, calib: dict[str, PairFeatures]) -> float:
    """Mean over sources of each source's mean −log σ(Δ) (nats) on its calibration pairs: `tuned`'s selection score."""
    return float(torch.stack([F.softplus(-head.reward_diff(pf)).mean() for pf in calib.values()]).mean())


def _tuned_head(
    train: dict[str, PairFeatures], calib: dict[str, PairFeatures], tcfg: TrainConfig, hcfg: HeadConfig, seed: int
) -> HeadModel:
    """The `fixed` head of the grid λ (baselines.simplex_grid) with the lowest `calib_log_loss` (first on a tie)."""
    grid = simplex_grid(len(train), tcfg.tuned_step, tcfg.tuned_max_points, seed)
    best, best_loss, losses = None, math.inf, []
    for lam in grid:
        head = train_head(train, "fixed", tcfg, hcfg, seed, lam)
        losses.append(calib_log_loss(head, {s: calib[s] for s in train}))
        if losses[-1] < best_loss:
            best, best_loss = head, losses[-1]
    best.meta |= {
        "scheme": "tuned",
        "lam": best.history["lam"][0].tolist(),
        "grid": grid.tolist(),
        "calib_log_loss": losses,
        "tuned_step": tcfg.tuned_step,
        "tuned_max_points": tcfg.tuned_max_points,
    }
    return best


def objective(diffs: Sequence[torch.Tensor], w: torch.Tensor, lam: torch.Tensor, l2: float) -> torch.Tensor:
    """Σ_i λ_i · mean BT loss of source i's diffs[N_i, h] + ½·l2·‖w‖² (the full-batch loss the head minimises)."""
    loss = 0.5 * l2 * (w @ w)
    for lam_i, x in zip(lam.to(w.dtype), diffs):
        loss = loss + lam_i * F.softplus(-(x.to(w.dtype) @ w)).mean()
    return loss


def polish(diffs: Sequence[torch.Tensor], w: torch.Tensor, lam: torch.Tensor, l2: float) -> torch.Tensor:
    """w [h] moved to the exact minimiser of `objective` at fixed λ: full-batch float64 L-BFGS started from w."""
    v = w.detach().double().clone().requires_grad_(True)
    xs = [x.double() for x in diffs]
    opt = torch.optim.LBFGS(
        [v],
        lr=1.0,
        max_iter=POLISH_MAX_ITER,
        tolerance_grad=POLISH_TOL,
        tolerance_change=0.0,
        history_size=10,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective(xs, v, lam, l2)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return v.detach().to(w.dtype)


def full_grad_norm(diffs: Sequence[torch.Tensor], w: torch.Tensor, lam: torch.Tensor, l2: float) -> float:
    """‖∇ (Σ_i λ_i · mean BT loss of source i's diffs[N_i, h] + ½·l2·‖w‖²)‖ at w, over every training pair (float64)."""
    w64 = w.double()
    grad = l2 * w64
    for lam_i, x in zip(lam.double(), diffs):
        x = x.double()
        grad -= lam_i * (torch.sigmoid(-(x @ w64)) @ x) / x.shape[0]
    return float(grad.norm())


def _fit(
    diffs: torch.Tensor,
    plan: torch.Tensor,
    scheme: str,
    names: list[str],
    tcfg: TrainConfig,
    lam: Sequence[float] | None,
    callback: Callback | None,
    adam: _Adam,
    more: MoreConfig | None = None,
) -> dict[str, Any]:
    """Run the planned steps on standardised diffs[ΣN, h] with plan[steps, K·B]; `adam` updates its w in place."""
    K, h, w = len(names), diffs.shape[1], adam.w
    weighter = MoreWeighter(K, more.alpha, more.normalization) if scheme == "more" else None
    famo = Famo(K, tcfg.famo_lr, tcfg.famo_decay) if scheme == "famo" else None
    weights = fixed_weights(lam, names) if scheme == "fixed" else torch.full((K,), 1.0 / K)
    lams, deltas, stopped = [], [], False
    for chunk in plan.split(_CHUNK_STEPS):
        X = diffs[chunk].view(len(chunk), K, -1, h)  # one gather per chunk: per-step indexing dominated the run time
        first = len(deltas)
        for x in X:
            delta, grads = batch_grads(x, w)
            if weighter is not None:
                weights = weighter.step(grads, _check_losses(F.softplus(-delta).mean(1), len(deltas), names))
            if famo is not None:
                weights = famo.weights(_check_losses(F.softplus(-delta).mean(1), len(deltas), names))
            adam.step(weights @ grads)
            if famo is not None:  # FAMO's δ: the same batch's losses after the step
                famo.update(F.softplus(-delta).mean(1), F.softplus(-(x @ w)).mean(1))
            lams.append(weights)
            deltas.append(delta)
            if callback is not None and callback(len(deltas) - 1, weights, F.softplus(-delta).mean(1)) is False:
                stopped = True
                break
        _check_losses(F.softplus(-torch.stack(deltas[first:])).mean(-1), first, names)
        if stopped:
            break
    delta = torch.stack(deltas)
    loss = _check_losses(F.softplus(-delta).mean(-1), 0, names)
    if not torch.isfinite(w).all():
        raise TrainingError(f"head weights became non-finite by step {len(deltas) - 1} (sources {names})")
    return {"lam": torch.stack(lams), "loss": loss, "acc": (delta > 0).float().mean(-1), "source_names": names}


def _check_losses(loss: torch.Tensor, first_step: int, names: list[str]) -> torch.Tensor:
    """Return loss [K] or [steps, K] (steps from `first_step`) unchanged, or raise TrainingError at its first
    NaN/inf."""
    bad = ~torch.isfinite(loss)
    if bad.any():
        where = torch.nonzero(bad.view(-1, len(names)))[0].tolist()
        raise TrainingError(f"non-finite BT loss at step {first_step + where[0]} for source '{names[where[1]]}'")
    return loss
