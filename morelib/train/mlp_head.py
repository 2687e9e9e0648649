"""Reward-model training, `mlp` tier: a trunk shared by all sources on frozen features, then the linear reward head
(issue 23, item 1; paper §4, Eqs. 7–9, with a trainable shared representation where MORE's λ can act).

r(z) = w·t(x) + b, x = (z − mean)/scale (standardised like the linear head), t = depth × [Linear(width) + GELU]
(exact erf GELU). Init as torch.nn.Linear (U(±1/√fan_in) weights and biases) from a generator seeded by the seed, so
every scheme of one seed starts from the same weights. Every scheme sees the same batches as the linear head
(`sampling.batch_plan`, B = `batch_per_source` per source; `multitask-pooled` the pooled plan) and minimises
Σ λ_i L_i over trunk and head together with AdamW (`head.mlp_lr`, decoupled `head.mlp_weight_decay`).
MORE's λ comes from the per-source gradients of the FINAL linear layer only (the paper's "reward head"): the closed
form ∂L_i/∂w = −mean σ(−Δ)·(t(x_chosen) − t(x_rejected)) (`losses.batch_grads` on the trunk's feature differences),
momentum, normalisation and the min-norm solve of `more.MoreWeighter`; `famo` and `fixed`/`sizeprop` as the linear
head. The problem is non-convex, so there is no L-BFGS polish at a fixed λ: `head.mlp_epochs` epochs run, the
parameters are averaged over each epoch's steps, and the epoch whose average has the lowest calibration NLL (mean over
the trained sources of each source's mean −log σ(Δ)) is kept — calibration pairs only, for every scheme alike. `tuned`
picks its grid λ on the same calibration NLL. The bias b cancels in every BT loss and stays 0.
Checked in tests/test_mlp_head.py: forward and gradients against a torch.nn.Sequential of the same weights, MORE with
K = 1 equals the single-source fit of the same seed bit for bit, λ stays uniform at any B when every source's batch
gradient is the same, the chosen epoch's averaged iterate, save/load, bad settings.
# NOTE(paper): the paper fine-tunes the whole backbone; this tier trains a small trunk on the frozen features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from morelib.backbone.features import PairFeatures
from morelib.core.config import HeadConfig, MoreConfig, TrainConfig
from morelib.core.errors import ConfigError, TrainingError
from morelib.data.sampling import POOLED, batch_plan, pooled_plan
from morelib.train import reward_head
from morelib.weighting.baselines import Famo, fixed_weights, simplex_grid, size_proportional
from morelib.weighting.losses import batch_grads
from morelib.weighting.more import MoreWeighter

Layers = list[tuple[torch.Tensor, torch.Tensor]]  # (weight [out, in], bias [out]) of each trunk layer


@dataclass
class MlpHead:
    """An `mlp`-tier RM: r(z) = w·t((z − mean)/scale) + b with trunk `layers`, head w [width], and its history.

    history: `lam` [steps, K], `loss` [steps, K] (nats), `acc` [steps, K], `source_names`, `calib_nll` [epochs] (of
    each epoch's averaged iterate). meta: scheme, seed, settings, the chosen `epoch` (0-based).
    """

    layers: Layers
    w: torch.Tensor
    b: float
    mean: torch.Tensor
    scale: torch.Tensor
    history: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def reward(self, feats: torch.Tensor) -> torch.Tensor:
        """Rewards [N] of features feats[N, h]."""
        return trunk(self.layers, (feats.float() - self.mean) / self.scale) @ self.w + self.b

    def reward_diff(self, pf: PairFeatures) -> torch.Tensor:
        """Reward differences r_chosen − r_rejected [N] of a PairFeatures set."""
        return self.reward(pf.chosen) - self.reward(pf.rejected)

    def save(self, path: str | Path) -> Path:
        """Write this RM as a small torch file (tensors, floats, lists and strings only); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        state = {"kind": "mlp", "layers": [list(p) for p in self.layers], "w": self.w, "b": float(self.b)}
        torch.save({**state, "mean": self.mean, "scale": self.scale, "history": self.history, "meta": self.meta}, tmp)
        tmp.replace(path)
        return path


def load_head(path: str | Path) -> reward_head.HeadModel | MlpHead:
    """The feature-tier RM saved at `path`: an `MlpHead` when its file says kind "mlp", else a linear `HeadModel`."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if state.get("kind") != "mlp":
        return reward_head.HeadModel.load(path)
    layers = [(W, b) for W, b in state["layers"]]
    return MlpHead(layers, state["w"], state["b"], state["mean"], state["scale"], state["history"], state["meta"])


def trunk(layers: Layers, x: torch.Tensor) -> torch.Tensor:
    """The trunk's output [N, width] of standardised features x[N, h]: each layer GELU(x Wᵀ + b)."""
    for W, b in layers:
        x = F.gelu(F.linear(x, W, b))
    return x


def trainable_parameters(h: int, width: int, depth: int) -> int:
    """Trainable parameters of the mlp tier on h-dim features: trunk weights and biases plus the head's w [width]."""
    return h * width + width + (depth - 1) * (width * width + width) + width


def init_params(h: int, width: int, depth: int, seed: int) -> tuple[Layers, torch.Tensor]:
    """Trunk layers and head w drawn as torch.nn.Linear does (U(±1/√fan_in)), from a generator seeded by `seed`."""
    gen = torch.Generator().manual_seed(seed)

    def uniform(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
        return (torch.rand(shape, generator=gen) * 2 - 1) / math.sqrt(fan_in)

    layers, fan_in = [], h
    for _ in range(depth):
        layers.append((uniform((width, fan_in), fan_in), uniform((width,), fan_in)))
        fan_in = width
    return layers, uniform((width,), width)


def _check(train: dict[str, PairFeatures], scheme: str, lam: Sequence[float] | None, calib: Any) -> None:
    """The linear head's checks, plus calibration features of exactly the training sources (every scheme selects its
    epoch on them)."""
    reward_head._check_scheme(train, scheme, lam, calib if scheme == "tuned" else None)
    if scheme != "raw" and (calib is None or set(calib) != set(train)):
        raise ConfigError(
            f"the mlp tier chooses its epoch on calibration pairs: pass calib features of exactly the training sources "
            f"{list(train)}, got {None if calib is None else list(calib)}"
        )


def train_mlp(
    train: dict[str, PairFeatures],
    scheme: str,
    tcfg: TrainConfig,
    hcfg: HeadConfig,
    seed: int,
    calib: dict[str, PairFeatures] | None,
    lam: Sequence[float] | None = None,
    more: MoreConfig | None = None,
    sizes: dict[str, int] | None = None,
) -> MlpHead:
    """Fit an mlp-tier RM on per-source training features with the given scheme (module docstring).

    `calib`: per-source calibration features (every scheme picks its epoch on them; `tuned` also its λ).
    `more` (scheme `more` only): MORE's α and normalisation. `sizes` (scheme `sizeprop` only): each source's available
    training pairs n_i of λ_i = n_i/Σn, as `reward_head.train_head` (default: the pairs in `train`). Raises
    TrainingError naming the step and source when a loss becomes NaN/inf.
    """
    _check(train, scheme, lam, calib)
    with reward_head._threads(reward_head.HEAD_THREADS):
        if scheme == "tuned":
            return _tuned(train, calib, tcfg, hcfg, seed)
        if scheme == "sizeprop":
            n = sizes if sizes is not None else {name: len(pf) for name, pf in train.items()}
            if set(n) != set(train):
                raise ConfigError(f"sizeprop sizes must name the training sources {list(train)}, got {list(n)}")
            by_size = size_proportional([n[name] for name in train])
            head = train_mlp(train, "fixed", tcfg, hcfg, seed, calib, by_size)
            head.meta |= {"scheme": "sizeprop", "lam": by_size.tolist()}
            return head
        return _fit(train, scheme, tcfg, hcfg, seed, calib, lam, more or MoreConfig())


def calib_nll(head: MlpHead, calib: dict[str, PairFeatures]) -> float:
    """Mean over sources of each source's mean −log σ(Δ) (nats) on its calibration pairs: the epoch and λ score."""
    with torch.no_grad():
        return float(torch.stack([F.softplus(-head.reward_diff(pf)).mean() for pf in calib.values()]).mean())


def _tuned(
    train: dict[str, PairFeatures], calib: dict[str, PairFeatures], tcfg: TrainConfig, hcfg: HeadConfig, seed: int
) -> MlpHead:
    """The `fixed` fit of the grid λ (baselines.simplex_grid) with the lowest `calib_nll` (first on a tie)."""
    grid = simplex_grid(len(train), tcfg.tuned_step, tcfg.tuned_max_points, seed)
    best, losses = None, []
    for lam in grid:
        head = train_mlp(train, "fixed", tcfg, hcfg, seed, calib, lam)
        losses.append(calib_nll(head, calib))
        if best is None or losses[-1] < min(losses[:-1]):
            best = head
    best.meta |= {"scheme": "tuned", "lam": best.history["lam"][0].tolist(), "grid": grid.tolist()}
    best.meta |= {"calib_log_loss": losses, "tuned_step": tcfg.tuned_step, "tuned_max_points": tcfg.tuned_max_points}
    return best


def _plan(sizes: dict[str, int], scheme: str, tcfg: TrainConfig, epochs: int, seed: int) -> torch.Tensor:
    """Row indices [steps, K·B] into the concatenated sources: the balanced plan (source-major per step), or the pooled
    plan for `multitask-pooled` — the linear head's plans."""
    offsets = torch.tensor([0] + list(sizes.values())[:-1]).cumsum(0)
    if scheme == POOLED:
        codes = pooled_plan(sizes, tcfg.batch_per_source, epochs, tcfg.resample_pairs, seed)
        stride = max(sizes.values())
        return offsets[codes // stride] + codes % stride
    plan = batch_plan(sizes, tcfg.batch_per_source, epochs, tcfg.resample_pairs, seed)
    return (plan + offsets[None, :, None]).flatten(1)


def _fit(
    train: dict[str, PairFeatures],
    scheme: str,
    tcfg: TrainConfig,
    hcfg: HeadConfig,
    seed: int,
    calib: dict[str, PairFeatures],
    lam: Sequence[float] | None,
    more: MoreConfig,
) -> MlpHead:
    """Train trunk + head for `head.mlp_epochs` epochs; keep the epoch-averaged iterate with the lowest calib NLL."""
    names, K = list(train), len(train)
    mean, scale = reward_head.standardizer(train)
    xc = torch.cat([(pf.chosen.float() - mean) / scale for pf in train.values()])
    xr = torch.cat([(pf.rejected.float() - mean) / scale for pf in train.values()])
    layers, w = init_params(xc.shape[1], hcfg.width, hcfg.depth, seed)
    head = MlpHead(layers, w, 0.0, mean, scale)
    if scheme == "raw":
        head.meta = {"scheme": "raw", "seed": seed}
        head.history = {"lam": torch.zeros(0, K), "loss": torch.zeros(0, K), "acc": torch.zeros(0, K)}
        head.history["source_names"] = names
        return head
    plan = _plan({n: len(pf) for n, pf in train.items()}, scheme, tcfg, hcfg.mlp_epochs, seed)
    step_fn = _Stepper(scheme, K, tcfg, lam, names, more)
    params = [p for layer in layers for p in layer] + [w]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=hcfg.mlp_lr, weight_decay=hcfg.mlp_weight_decay)
    per_epoch = len(plan) // hcfg.mlp_epochs
    best, nlls, log = None, [], []
    for epoch in range(hcfg.mlp_epochs):
        total = [torch.zeros_like(p) for p in params]
        for rows in plan[epoch * per_epoch : (epoch + 1) * per_epoch]:
            log.append(step_fn(head, xc[rows], xr[rows], opt, len(log)))
            for t, p in zip(total, params):
                t.add_(p.detach())
        averaged = _with_params(head, [t / per_epoch for t in total])
        nlls.append(calib_nll(averaged, calib))
        if best is None or nlls[-1] < min(nlls[:-1]):
            best, chosen = averaged, epoch
    history = _history(log, step_fn.columns)
    best.history = {**history, "calib_nll": torch.tensor(nlls), "lam_final": history["lam"][-per_epoch:].mean(0)}
    best.meta = _meta(scheme, seed, tcfg, hcfg, chosen, more, xc.shape[1])
    return best


def _with_params(head: MlpHead, flat: list[torch.Tensor]) -> MlpHead:
    """A detached copy of `head` with trunk/head parameters `flat` (the order of `_fit`'s params)."""
    layers = [(flat[2 * i].clone(), flat[2 * i + 1].clone()) for i in range(len(head.layers))]
    return MlpHead(layers, flat[-1].clone(), 0.0, head.mean, head.scale)


class _Stepper:
    """One optimiser step of a scheme on a batch: per-source BT losses, λ (uniform, fixed, MORE or FAMO), Σ λ_i L_i."""

    def __init__(
        self, scheme: str, K: int, tcfg: TrainConfig, lam: Sequence[float] | None, names: list[str], more: MoreConfig
    ) -> None:
        self.scheme, self.K, self.names = scheme, K, names
        self.columns = [POOLED] if scheme == POOLED else names
        self.weighter = MoreWeighter(K, more.alpha, more.normalization) if scheme == "more" else None
        self.famo = Famo(K, tcfg.famo_lr, tcfg.famo_decay) if scheme == "famo" else None
        self.weights = fixed_weights(lam, names) if scheme == "fixed" else torch.full((K,), 1.0 / K)

    def __call__(
        self, head: MlpHead, xc: torch.Tensor, xr: torch.Tensor, opt: torch.optim.Optimizer, step: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Update head's parameters in place on batch rows xc, xr [K·B, h]; returns (λ [K], losses [K'], acc [K'])."""
        groups = 1 if self.scheme == POOLED else self.K
        dh = _pair_diff(head, xc, xr)
        delta = (dh @ head.w).view(groups, -1)
        losses = _checked(F.softplus(-delta).mean(1), step, self.columns)
        weights = self.weights
        if self.weighter is not None:  # eq. 9 on the reward head's closed-form gradients (the final linear layer)
            grads = batch_grads(dh.detach().view(self.K, -1, dh.shape[1]), head.w.detach())[1]
            weights = self.weighter.step(grads, losses.detach())
        if self.famo is not None:
            weights = self.famo.weights(losses.detach())
        loss = losses.mean() if self.scheme == POOLED else weights @ losses
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if self.famo is not None:  # FAMO's δ: the same batch's losses after the step
            with torch.no_grad():
                after = F.softplus(-(_pair_diff(head, xc, xr) @ head.w).view(self.K, -1))
            self.famo.update(losses.detach(), after.mean(1))
        return weights.detach(), losses.detach(), (delta.detach() > 0).float().mean(1)


def _pair_diff(head: MlpHead, xc: torch.Tensor, xr: torch.Tensor) -> torch.Tensor:
    """t(x_chosen) − t(x_rejected) [N, width] of standardised rows xc, xr [N, h], in one trunk pass."""
    out = trunk(head.layers, torch.cat([xc, xr]))
    return out[: len(xc)] - out[len(xc) :]


def _checked(loss: torch.Tensor, step: int, names: list[str]) -> torch.Tensor:
    """loss [K] unchanged, or TrainingError naming the step and the first source whose loss is NaN/inf."""
    bad = ~torch.isfinite(loss.detach())
    if bad.any():
        raise TrainingError(f"non-finite BT loss at step {step} for source '{names[int(bad.nonzero()[0])]}'")
    return loss


def _history(log: list[tuple[torch.Tensor, ...]], columns: list[str]) -> dict[str, Any]:
    """Per-step λ [steps, K], losses and accuracies [steps, K'] and the loss columns' names."""
    lam, loss, acc = (torch.stack(part) for part in zip(*log))
    return {"lam": lam, "loss": loss, "acc": acc, "source_names": columns}


def _meta(
    scheme: str, seed: int, tcfg: TrainConfig, hcfg: HeadConfig, epoch: int, more: MoreConfig, h: int
) -> dict[str, Any]:
    """What the fit used: scheme, seed, the head settings, the chosen epoch and the trainable parameter count."""
    meta = {"scheme": scheme, "seed": seed, "kind": "mlp", "width": hcfg.width, "depth": hcfg.depth}
    meta |= {"mlp_lr": hcfg.mlp_lr, "mlp_epochs": hcfg.mlp_epochs, "mlp_weight_decay": hcfg.mlp_weight_decay}
    meta |= {"batch_per_source": tcfg.batch_per_source, "epoch": epoch}
    meta["trainable_parameters"] = trainable_parameters(h, hcfg.width, hcfg.depth)
    if scheme == "more":
        meta |= {"alpha": more.alpha, "normalization": more.normalization}
    if scheme == "famo":
        meta |= {"famo_lr": tcfg.famo_lr, "famo_decay": tcfg.famo_decay}
    return meta
