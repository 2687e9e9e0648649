"""Reward-model training, blocks tier: the backbone's top k blocks + final norm + score layer on cached hidden states.

Issue 23's rung between a head on frozen features and full fine-tuning: a shared trainable representation that runs
on a CPU. The states entering block L−k are cached once per text (`morelib.backbone.hidden_states.StateCache`);
`TopBlocks` is the backbone's own decoder class built with k layers, holding copies of blocks L−k..L−1, the final
norm and the rotary embedding, fed those states as `inputs_embeds` with the full model's attention mask and position
ids; the reward is the score layer at the last real token, so its forward is the full model's (1e-4, fp32 states).
One step = one balanced batch of B pairs per source (`morelib.data.sampling.batch_plan`, seeded). Per-source BT losses
L_i are weighted as in the fine-tuning tier: `more` — MoreWeighter (momentum, normalisation, min-norm) on each source's
closed-form score-layer gradient (`losses.source_head_grads` of z_w − z_l, z = the score layer's input, the function
`morelib.train.finetune` uses); `multitask` λ = 1/K; `fixed` the given λ; `sizeprop` λ_i = n_i/Σn; `single` one source.
The loss Σ λ_i L_i trains blocks, norm and score layer with AdamW (`blocks.lr`; `blocks.head_lr` for the score layer);
its gradient is formed as Σ λ_i ∇L_i from one backward pass per source of at most MICRO_PAIRS pairs each (the same
gradient as one pass over the batch, at bounded memory; λ is known only after every source's z). The problem is not
convex, so there is no polish at a fixed λ: every epoch's iterates are averaged (torch.optim.swa_utils.AveragedModel),
and the epoch whose average has the lowest calibration NLL (mean over sources of each source's mean −log σ(Δ)) is kept,
for every scheme alike. `tuned`: the `fixed` fit of the simplex-grid λ (`train.tuned_step`, at most
`blocks.tuned_max_points` points, uniform first) with the lowest calibration NLL. Seeds vary the score layer's init
(N(0, 0.02), as transformers initialises it) and the batch plan; MultiTask and MORE of one seed share both.
Checked in tests/test_blocks.py (tiny random Llama): forward from cached states = the full model (1e-4); MORE's λ =
the fine-tuning tier's on the same batch and weights; MORE with K = 1 = single; export through morelib.cli.export
reproduced by `transformers` (1e-4); the per-source gradient = autograd of Σ λ_i L_i; bad k, scheme and cache errors.
# NOTE(paper): the paper fine-tunes every weight; this tier trains the top k blocks only (what 2 CPU cores allow).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from morelib.backbone.features import backbone
from morelib.backbone.hidden_states import SHARD_TEXTS, StateCache, check_k, n_blocks
from morelib.backbone.model import at_last_token, is_encoder, score_layer
from morelib.core.config import BLOCKS_SCHEMES, Config
from morelib.core.errors import ConfigError, DataError, ModelError, RunError, TrainingError
from morelib.data.sampling import batch_plan
from morelib.data.sources import Pair
from morelib.weighting.baselines import fixed_weights, simplex_grid, size_proportional
from morelib.weighting.losses import source_head_grads
from morelib.weighting.more import MoreWeighter

SCORE_INIT_STD = 0.02  # transformers' initializer_range: the score layer a HF sequence classifier starts from
SCORE_BATCH = 32  # texts per forward when scoring (no backward: larger batches than training are cheap)
MICRO_PAIRS = 16  # pairs per forward + backward in training: SmolLM2 k = 1 kept ~7 GB of activations for a whole
# K·B = 320-pair batch (B = 64); one source's 16 pairs at a time keep it under 1 GB at any B, for the same gradient
Rows = tuple[list[Tensor], list[Tensor]]  # one source's cached states: (chosen [T_i, h] each, rejected [T_i, h] each)


def _decoder(model: Any) -> nn.Module:
    """The decoder stack (`.layers`, `.norm`) of a reward model, or ModelError for encoders and other layouts."""
    base = model.base_model
    if is_encoder(model) or not isinstance(getattr(base, "layers", None), nn.ModuleList) or not hasattr(base, "norm"):
        raise ModelError(
            f"the blocks tier needs a decoder with `.layers` and `.norm` (Llama-like); {type(model).__name__} has none"
        )
    return base


def trainable_modules(model: Any, k: int) -> list[nn.Module]:
    """What the blocks tier trains, in order: blocks L−k..L−1, the final norm, the score layer."""
    base = _decoder(model)
    L = n_blocks(model)
    check_k(model, k, model.config.name_or_path or type(model).__name__)
    return [*base.layers[L - k :], base.norm, score_layer(model)]


def trainable_parameters(cfg: Config) -> int:
    """Parameters the blocks tier trains on cfg's backbone at k = blocks.k (blocks, final norm, score layer)."""
    model = backbone(cfg.model.name, cfg.model.dtype, cfg.model.padding_side)[0]
    return sum(p.numel() for m in trainable_modules(model, cfg.blocks.k) for p in m.parameters())


class TopBlocks(nn.Module):
    """The top k blocks, final norm and score layer of a decoder reward model (fp32 copies), run on cached states."""

    def __init__(self, model: Any, k: int) -> None:
        super().__init__()
        *layers, norm, score = trainable_modules(model, k)
        base, L = _decoder(model), n_blocks(model)
        config = copy.deepcopy(base.config)
        config.num_hidden_layers = k
        if getattr(config, "layer_types", None):
            config.layer_types = list(config.layer_types[L - k :])
        with torch.device("meta"):  # no weights allocated: every module is replaced by a copy below
            decoder = type(base)(config)
        decoder.embed_tokens = None  # the input is the cached states
        decoder.layers = copy.deepcopy(nn.ModuleList(layers))
        decoder.norm = copy.deepcopy(norm)
        decoder.rotary_emb = copy.deepcopy(base.rotary_emb)
        self.decoder, self.score, self.k = decoder.float(), copy.deepcopy(score).float(), k
        self.requires_grad_(True)
        left = [name for name, t in [*self.named_parameters(), *self.named_buffers()] if t.is_meta]
        if left:
            raise ModelError(f"TopBlocks of {type(base).__name__} left tensors unset: {left[:3]}")

    def forward(self, states: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(score-layer input at the last real token z [B, h], rewards [B]) of right-padded states [B, T, h]."""
        positions = (mask.long().cumsum(1) - 1).clamp(min=0)
        out = self.decoder(inputs_embeds=states, attention_mask=mask, position_ids=positions, use_cache=False)
        z = at_last_token(out.last_hidden_state, mask)
        return z, self.score(z).squeeze(-1)


def merge_into(top: TopBlocks, model: Any) -> Any:
    """The full reward model `model` with its top k blocks, final norm and score layer replaced by top's (in place)."""
    with torch.no_grad():
        for target, source in zip(trainable_modules(model, top.k), [*top.decoder.layers, top.decoder.norm, top.score]):
            target.load_state_dict(source.state_dict())
    return model


def pad_states(rows: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Right-padded float32 states [B, T, h] and attention mask [B, T] of per-text states rows[i] [T_i, h]."""
    T = max(len(r) for r in rows)
    states = torch.zeros(len(rows), T, rows[0].shape[1])
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        states[i, : len(r)] = r.float()
        mask[i, : len(r)] = 1
    return states, mask


def rewards_of(top: TopBlocks, rows: Sequence[Tensor]) -> Tensor:
    """Rewards [N] float32 of texts given by their cached states rows[i] [T_i, h] (length-sorted batches)."""
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    out = torch.zeros(len(rows))
    with torch.inference_mode():
        for start in range(0, len(order), SCORE_BATCH):
            idx = order[start : start + SCORE_BATCH]
            out[idx] = top(*pad_states([rows[i] for i in idx]))[1].float()
    return out


def calib_nll(top: TopBlocks, calib: dict[str, Rows]) -> float:
    """Mean over sources of each source's mean −log σ(r_chosen − r_rejected) on its calibration pairs (nats)."""
    per_source = []
    for chosen, rejected in calib.values():
        r = rewards_of(top, [*chosen, *rejected])
        per_source.append(F.softplus(-(r[: len(chosen)] - r[len(chosen) :])).mean())
    return float(torch.stack(per_source).mean())


class BlocksRM:
    """A blocks-tier RM: trained top blocks scoring texts from the backbone's cached hidden states.

    history: `lam`, `loss`, `acc` [steps, K], `source_names`, `calib_nll` [epochs], `epoch` (the kept one, from 0),
    `lam_final` [K] (mean λ over the kept epoch); meta: scheme, seed, settings and trainable parameter count.
    """

    uses_features = False

    def __init__(self, top: TopBlocks, cache: StateCache, history: dict[str, Any], meta: dict[str, Any]) -> None:
        self.top, self.cache, self.history, self.meta = top.eval(), cache, history, meta
        self._diffs: dict[tuple, np.ndarray] = {}

    def _score(self, texts: Sequence[str]) -> Tensor:
        """Rewards [N] float32 of texts, their hidden states extracted first where the cache lacks them."""
        out = [torch.zeros(0)]
        for start in range(0, len(texts), SHARD_TEXTS):
            chunk = list(texts[start : start + SHARD_TEXTS])
            self.cache.extract(chunk)
            out.append(rewards_of(self.top, self.cache.load(chunk)))
        return torch.cat(out)

    def reward_diff(self, pairs: Sequence[Pair] | None, features: Any = None) -> np.ndarray:
        """r(prompt + chosen) − r(prompt + rejected) [N] float64 (memoised: splits are scored again)."""
        if pairs is None:
            raise RunError("a blocks-tier RM scores texts: pass the pairs (StudyData.pairs)")
        key = tuple((p.prompt, p.chosen, p.rejected) for p in pairs)
        if key not in self._diffs:
            r = self._score([p.prompt + p.chosen for p in pairs] + [p.prompt + p.rejected for p in pairs])
            self._diffs[key] = (r[: len(pairs)] - r[len(pairs) :]).double().numpy()
        return self._diffs[key].copy()

    def rewards(self, prompts: Sequence[str], responses: Sequence[str], features: Any = None) -> Tensor:
        """r(prompt + response) [N] float32 on CPU."""
        if len(prompts) != len(responses):
            raise ValueError(f"rewards got {len(prompts)} prompts but {len(responses)} responses")
        return self._score([p + r for p, r in zip(prompts, responses)])

    def save(self, path: str | Path) -> Path:
        """Write k, the trained weights, history and meta as one torch file (atomic); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        state = {"k": self.top.k, "identity": self.cache.manifest["identity"], "weights": self.top.state_dict()}
        torch.save({**state, "history": self.history, "meta": self.meta}, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, cfg: Config, cache_dir: str | Path) -> BlocksRM:
        """A BlocksRM written by `save`, on cfg's backbone; DataError when it was trained on another backbone."""
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        cache = StateCache(cfg.model, state["k"], cache_dir, cfg.blocks.cache_dtype, cfg.blocks.batch_size)
        if state["identity"] != cache.manifest["identity"]:
            raise DataError(
                f"blocks RM {path} was trained on another backbone than {cfg.model.name} (identity differs)"
            )
        top = TopBlocks(cache.model, state["k"])
        top.load_state_dict(state["weights"])
        return cls(top, cache, state["history"], state["meta"])


def _check_inputs(
    train: dict[str, Sequence[Pair]],
    calib: dict[str, Sequence[Pair]],
    scheme: str,
    batch_per_source: int,
    lam: Sequence[float] | None,
) -> None:
    """ConfigError for an unknown scheme, empty or missing sources, a bad B, or λ given to a scheme without λ."""
    if scheme not in BLOCKS_SCHEMES:
        raise ConfigError(f"unknown blocks-tier scheme '{scheme}'; valid: {', '.join(BLOCKS_SCHEMES)}")
    if not train or any(len(p) == 0 for p in train.values()):
        raise ConfigError(
            f"the blocks tier needs non-empty sources, got sizes { {k: len(v) for k, v in train.items()} }"
        )
    if scheme == "single" and len(train) != 1:
        raise ConfigError(f"scheme 'single' needs exactly one source, got {len(train)}: {list(train)}")
    if (lam is not None) != (scheme == "fixed"):
        raise ConfigError(f"λ must be given for scheme 'fixed' and only for it (scheme '{scheme}')")
    if isinstance(batch_per_source, bool) or not isinstance(batch_per_source, int) or batch_per_source < 1:
        raise ConfigError(f"batch_per_source must be an int ≥ 1, got {batch_per_source!r}")
    lacking = [s for s in train if not calib.get(s)]
    if lacking:
        raise ConfigError(
            f"the blocks tier keeps the epoch with the best calibration NLL: sources {lacking} have no calib"
        )


def pair_rows(cache: StateCache, pairs: dict[Any, Sequence[Pair]], extract: bool = True) -> dict[Any, Rows]:
    """Per source, the cached states of prompt + chosen and of prompt + rejected of each pair (one read of the cache;
    with `extract`, the texts the cache lacks are extracted first)."""
    texts = [p.prompt + side for ps in pairs.values() for p in ps for side in (p.chosen, p.rejected)]
    if extract:
        cache.extract(texts, progress=True)  # one call over every source: its line is the overall progress
    states, out, start = cache.load(texts), {}, 0
    for name, ps in pairs.items():
        block, start = states[start : start + 2 * len(ps)], start + 2 * len(ps)
        out[name] = (block[0::2], block[1::2])
    return out


def _source_grad(top: TopBlocks, chosen: Sequence[Tensor], rejected: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Back-propagate one source's mean BT loss into .grad, MICRO_PAIRS pairs per forward (bounded memory at any B);
    returns (z_w − z_l [B, h], Δ [B]) detached."""
    diffs, deltas, B = [], [], len(chosen)
    for start in range(0, B, MICRO_PAIRS):
        c, r = chosen[start : start + MICRO_PAIRS], rejected[start : start + MICRO_PAIRS]
        z, rewards = top(*pad_states([*c, *r]))
        delta = rewards[: len(c)] - rewards[len(c) :]
        (F.softplus(-delta).sum() / B).backward()
        diffs.append((z[: len(c)] - z[len(c) :]).detach().float())
        deltas.append(delta.detach())
    return torch.cat(diffs), torch.cat(deltas)


def _step(
    top: TopBlocks, chosen: list[list[Tensor]], rejected: list[list[Tensor]], weighter: MoreWeighter | None, lam: Tensor
) -> tuple[Tensor, Tensor]:
    """Set .grad of top's parameters to ∇ Σ λ_i L_i of one balanced batch (chosen[i], rejected[i]: source i's B
    texts' states); returns (λ [K], Δ [K, B]). Each ∇L_i is kept apart, so MORE's λ can weigh them after the pass."""
    params, K = list(top.parameters()), len(chosen)
    grads, diffs, deltas = [], [], []
    for i in range(K):
        for p in params:
            p.grad = None
        diff, delta = _source_grad(top, chosen[i], rejected[i])
        grads.append([p.grad for p in params])
        diffs.append(diff)
        deltas.append(delta)
    delta = torch.stack(deltas)
    losses = F.softplus(-delta).mean(1)
    if not torch.isfinite(losses).all():
        raise TrainingError(
            f"non-finite BT loss for source index(es) {torch.nonzero(~torch.isfinite(losses))[:, 0].tolist()}"
        )
    if weighter is not None:
        source_ids = torch.arange(K).repeat_interleave(delta.shape[1])
        w = top.score.weight.detach().float()[0]
        lam = weighter.step(source_head_grads(torch.cat(diffs), source_ids, w, K), losses)
    for j, p in enumerate(params):
        p.grad = sum(lam[i].item() * grads[i][j] for i in range(K))
    return lam, delta


def _epoch(
    top: TopBlocks,
    opt: torch.optim.Optimizer,
    steps: Tensor,
    train: dict[str, Rows],
    weighter: MoreWeighter | None,
    weights: Tensor,
    log: dict[str, list],
) -> AveragedModel:
    """One pass over the plan's steps [S, K, B] (λ, loss, accuracy appended to `log`); returns its averaged iterates."""
    names, average = list(train), AveragedModel(top)
    top.train()
    for step in steps:
        chosen, rejected = (
            [[train[s][side][j] for j in row] for s, row in zip(names, step.tolist())] for side in (0, 1)
        )
        try:
            lam, delta = _step(top, chosen, rejected, weighter, weights)
        except TrainingError as err:
            raise TrainingError(f"blocks tier, step {len(log['lam'])}: {err} (sources {names})") from err
        opt.step()
        average.update_parameters(top)
        log["lam"].append(lam.detach().float())
        log["loss"].append(F.softplus(-delta).mean(1))
        log["acc"].append((delta > 0).float().mean(1))
    return average


def _fit_once(
    cache: StateCache,
    train: dict[str, Rows],
    calib: dict[str, Rows],
    lam: Sequence[float] | Tensor | None,
    more: bool,
    seed: int,
    B: int,
    cfg: Config,
) -> tuple[TopBlocks, dict[str, Any]]:
    """Train fresh top blocks (score layer seeded) for blocks.epochs; keep the calibration-best epoch's average."""
    b, names = cfg.blocks, list(train)
    K = len(names)
    top = TopBlocks(cache.model, b.k)
    with torch.no_grad():
        top.score.weight.normal_(0.0, SCORE_INIT_STD, generator=torch.Generator().manual_seed(seed))
    plan = batch_plan({s: len(train[s][0]) for s in names}, B, b.epochs, cfg.train.resample_pairs, seed)
    per_epoch = len(plan) // b.epochs
    weighter = MoreWeighter(K, cfg.more.alpha, cfg.more.normalization) if more else None
    weights = fixed_weights(lam, names) if lam is not None else torch.full((K,), 1.0 / K)
    groups = [{"params": top.decoder.parameters(), "lr": b.lr}, {"params": top.score.parameters(), "lr": b.head_lr}]
    opt = torch.optim.AdamW(groups, weight_decay=b.weight_decay)
    log: dict[str, list] = {"lam": [], "loss": [], "acc": [], "calib_nll": []}
    best: tuple[float, dict[str, Tensor] | None, int] = (math.inf, None, 0)
    for epoch in range(b.epochs):
        steps = plan[epoch * per_epoch : (epoch + 1) * per_epoch]
        average = _epoch(top, opt, steps, train, weighter, weights, log)
        log["calib_nll"].append(calib_nll(average.module.eval(), calib))
        if log["calib_nll"][-1] < best[0]:
            best = (log["calib_nll"][-1], copy.deepcopy(average.module.state_dict()), epoch)
    if best[1] is None:
        raise TrainingError(f"blocks tier: the calibration NLL is not finite after any epoch: {log['calib_nll']}")
    top.load_state_dict(best[1])
    history = {k: torch.stack(log[k]) for k in ("lam", "loss", "acc")}
    kept = history["lam"][best[2] * per_epoch : (best[2] + 1) * per_epoch]
    history |= {"source_names": names, "calib_nll": log["calib_nll"], "epoch": best[2], "lam_final": kept.mean(0)}
    return top.eval(), history


def fit(
    cfg: Config,
    train: dict[str, list[Pair]],
    calib: dict[str, list[Pair]],
    scheme: str,
    seed: int,
    batch_per_source: int,
    cache_dir: str | Path,
    lam: Sequence[float] | None = None,
) -> BlocksRM:
    """Fit a blocks-tier RM of `scheme` on per-source training pairs; the epoch is chosen on `calib` (see module
    docstring). Hidden states of the training and calibration texts are extracted into `cache_dir` first (a warm
    cache extracts nothing). `lam`: the weights of scheme `fixed` only."""
    _check_inputs(train, calib, scheme, batch_per_source, lam)
    b = cfg.blocks
    cache = StateCache(cfg.model, b.k, cache_dir, b.cache_dtype, b.batch_size)
    names = list(train)
    both = pair_rows(cache, {**{("train", s): train[s] for s in names}, **{("calib", s): calib[s] for s in names}})
    rows, calib_rows = ({s: both[(side, s)] for s in names} for side in ("train", "calib"))
    meta: dict[str, Any] = {
        "scheme": scheme,
        "seed": seed,
        "tier": "blocks",
        "k": b.k,
        "lr": b.lr,
        "head_lr": b.head_lr,
        "weight_decay": b.weight_decay,
        "epochs": b.epochs,
        "batch_per_source": batch_per_source,
        "cache_dtype": b.cache_dtype,
    }
    if scheme == "tuned":
        top, history, extra = _tuned(cache, rows, calib_rows, seed, batch_per_source, cfg)
        meta |= extra
    else:
        if scheme == "sizeprop":
            lam = size_proportional([len(train[s]) for s in names]).tolist()
        top, history = _fit_once(cache, rows, calib_rows, lam, scheme == "more", seed, batch_per_source, cfg)
        if lam is not None:
            meta["lam"] = fixed_weights(lam, names).tolist()
    if scheme == "more":
        meta |= {"alpha": cfg.more.alpha, "normalization": cfg.more.normalization}
    meta |= {"trainable_parameters": sum(p.numel() for p in top.parameters()), "epoch": history["epoch"]}
    return BlocksRM(top, cache, history, meta)


def _tuned(
    cache: StateCache, train: dict[str, Rows], calib: dict[str, Rows], seed: int, B: int, cfg: Config
) -> tuple[TopBlocks, dict[str, Any], dict[str, Any]]:
    """The `fixed` fit of the grid λ with the lowest calibration NLL (first on a tie), its history and meta."""
    grid = simplex_grid(len(train), cfg.train.tuned_step, cfg.blocks.tuned_max_points, seed)
    best, scores = None, []
    for lam in grid:
        top, history = _fit_once(cache, train, calib, lam, False, seed, B, cfg)
        scores.append(min(history["calib_nll"]))
        if best is None or scores[-1] < min(scores[:-1]):
            best = (top, history, lam)
    top, history, lam = best
    extra = {"lam": lam.tolist(), "grid": grid.tolist(), "calib_log_loss": scores, "tuned_step": cfg.train.tuned_step}
    return top, history, extra | {"tuned_max_points": cfg.blocks.tuned_max_points}
