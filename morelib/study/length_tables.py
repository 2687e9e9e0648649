"""Length tables of the study: length-calibrated RMs (`<scheme>+L`), before/after with paired CIs, length-controlled
accuracy against the "longer wins" rule, and the finding sentences computed from them.

Each RM's length term b̂ is fitted on the calibration pairs of the sources it was trained on (as its temperature is,
`pipeline.temperature_fits`) by `evaluation.length.fit` and subtracted from its test rewards; test pairs are never
seen by the fit. Lengths are backbone tokens where the features carry them, words of the response text otherwise.
Seeds are the columns of [N, S] arrays (every seed scores the same test pairs), so each metric is a seed mean and
every CI resamples test pairs (paired across seeds and across before/after or RM/rule).
Checked in tests/test_length_tables.py on the tiny profile against direct calls to evaluation.length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from morelib.core.config import Config
from morelib.core.errors import RunError
from morelib.evaluation import length
from morelib.study import tables
from morelib.study.pipeline import StudyData
from morelib.train.reward_models import RewardModel, RMKey

Diffs = dict[RMKey, dict[str, np.ndarray]]
SUFFIX = "+L"  # scheme suffix of a length-calibrated RM, beside temperature scaling's "+T"


def split_lengths(data: StudyData, source: str, split: str = "test") -> tuple[np.ndarray, np.ndarray, str]:
    """(chosen lengths [N], rejected lengths [N], unit) of a source's split: tokens from the features, else words."""
    pf = data.features.get(source, {}).get(split)
    if pf is not None and pf.chosen_len is not None and pf.rejected_len is not None:
        return np.asarray(pf.chosen_len, dtype=np.float64), np.asarray(pf.rejected_len, dtype=np.float64), "tokens"
    pairs = data.pairs[source][split]
    words = [[len(getattr(p, side).split()) for p in pairs] for side in ("chosen", "rejected")]
    return np.array(words[0], dtype=np.float64), np.array(words[1], dtype=np.float64), "words"


def split_rewards(rm: RewardModel, data: StudyData, source: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(r_chosen [N], r_rejected [N]) float64 of an RM on a source's split (features, or texts on the finetune tier)."""
    if rm.uses_features:
        pf = data.features[source][split]
        return tuple(rm.rewards([], [], f).double().numpy() for f in (pf.chosen, pf.rejected))
    pairs = data.pairs[source][split]
    prompts = [p.prompt for p in pairs]
    return tuple(rm.rewards(prompts, [getattr(p, s) for p in pairs]).double().numpy() for s in ("chosen", "rejected"))


def length_fits(
    heads: dict[RMKey, RewardModel], data: StudyData, schemes: Sequence[str], cfg: Config, method: str = "lowess"
) -> dict[RMKey, length.LengthFit]:
    """The length fit of every RM of `schemes`, on the calibration pairs of the sources it was trained on."""
    fits = {}
    for key, rm in heads.items():
        if key.scheme not in schemes:
            continue
        trained = [key.source] if key.source else list(key.subset or data.sources)
        parts = [(*split_rewards(rm, data, s, "calib"), *split_lengths(data, s, "calib")[:2]) for s in trained]
        r_c, r_r, l_c, l_r = (np.concatenate(cols) for cols in zip(*parts))
        fits[key] = length.fit(r_c, r_r, l_c, l_r, method=method, n_boot=cfg.n_boot, seed=cfg.seeds[0])
    if not fits:
        raise RunError(f"no RM of schemes {list(schemes)} to length-calibrate (have {sorted(map(str, heads))})")
    return fits


def fit_table(fits: dict[RMKey, length.LengthFit]) -> pd.DataFrame:
    """One row per RM: method, calibration pairs and the reward–length slope (per token or word) with its 95% CI."""
    rows = [
        {"rm": str(k), "scheme": k.scheme, "seed": k.seed, "method": f.method, "n_calib_pairs": f.n_pairs}
        | {"slope": f.slope, "slope_lo": f.slope_lo, "slope_hi": f.slope_hi}
        for k, f in sorted(fits.items())
    ]
    return pd.DataFrame(rows)


def calibrated_diffs(diffs: Diffs, data: StudyData, fits: dict[RMKey, length.LengthFit]) -> Diffs:
    """Test reward differences of every fitted RM with its length term removed, keyed `<scheme>+L`."""
    out: Diffs = {}
    for key, fit in fits.items():
        by_src = {}
        for src, d in diffs[key].items():
            lc, lr, _ = split_lengths(data, src)
            by_src[src] = fit.apply_diff(d, lc, lr)
        out[key.with_scheme(key.scheme + SUFFIX)] = by_src
    return out


def table3_with(table: pd.DataFrame, calibrated: pd.DataFrame, schemes: Sequence[str]) -> pd.DataFrame:
    """Table 3's layout (`tables.table3`) of the tidy test metrics plus the `+L` RMs' rows (`pipeline.metric_table`)."""
    return tables.table3(pd.concat([table, calibrated], ignore_index=True), schemes)


def seed_columns(diffs: Diffs, scheme: str, source: str) -> np.ndarray:
    """Reward differences [N, S] of `scheme`'s seeds on `source` (columns in seed order)."""
    cols = [by[source] for key, by in sorted(diffs.items()) if key.name == scheme and source in by]
    if not cols:
        raise RunError(f"no reward differences of '{scheme}' on '{source}'")
    return np.stack(cols, axis=1)


def _sources(diffs: Diffs, scheme: str) -> list[str]:
    """Test sources `scheme` was scored on, in first-seen order."""
    return list(dict.fromkeys(s for key, by in diffs.items() if key.name == scheme for s in by))


def before_after(diffs: Diffs, schemes: Sequence[str], data: StudyData, cfg: Config) -> pd.DataFrame:
    """`<scheme>+L` − `<scheme>` per scheme, test source and metric (accuracy, ece_10 with floors, rm_prefers_longer):
    seed means with a paired bootstrap 95% CI over test pairs (`length.before_after`)."""
    rows = []
    for scheme in schemes:
        for src in _sources(diffs, scheme):
            lc, lr, unit = split_lengths(data, src)
            b, a = seed_columns(diffs, scheme, src), seed_columns(diffs, scheme + SUFFIX, src)
            for row in length.before_after(b, a, lc, lr, n_boot=cfg.n_boot, seed=cfg.seeds[0]):
                rows.append({"scheme": scheme, "test_source": src, "length_unit": unit, **row})
    return pd.DataFrame(rows)


def length_split(diffs: Diffs, schemes: Sequence[str], data: StudyData, cfg: Config) -> pd.DataFrame:
    """Length-controlled accuracy per scheme and test source: chosen longer / shorter (CIs), the "longer wins" rule and
    RM − rule with a paired CI (`length.length_split`; seed means)."""
    rows = []
    for scheme in schemes:
        for src in _sources(diffs, scheme):
            lc, lr, _ = split_lengths(data, src)
            split = length.length_split(seed_columns(diffs, scheme, src), lc, lr, n_boot=cfg.n_boot, seed=cfg.seeds[0])
            rows.append({"scheme": scheme, "test_source": src, **split})
    return pd.DataFrame(rows)


def _ci(value: float, lo: float, hi: float) -> str:
    """`value [lo, hi]` with three decimals."""
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def finding_length_alone(split: pd.DataFrame) -> list[str]:
    """One sentence per scheme: on which sources its accuracy is above, indistinguishable from or below the "longer
    wins" rule (paired 95% CI of RM − rule), and where it is below chance on pairs whose chosen response is shorter."""
    out = []
    for scheme, part in split.groupby("scheme", sort=False):
        above = part[part["vs_longer_lo"] > 0]["test_source"].tolist()
        below = part[part["vs_longer_hi"] < 0]["test_source"].tolist()
        alone = part[(part["vs_longer_lo"] <= 0) & (part["vs_longer_hi"] >= 0)]
        text = f'**{scheme}** vs the "longer wins" rule (paired 95% CI of accuracy RM − rule): '
        parts = [f"above it on {', '.join(above)}" if above else "above it on no source"]
        if not alone.empty:
            shown = "; ".join(
                f"{r.test_source} {_ci(r.vs_longer_diff, r.vs_longer_lo, r.vs_longer_hi)}" for r in alone.itertuples()
            )
            parts.append(f"not distinguishable from it, so consistent with length alone, on {shown}")
        if below:
            parts.append(f"below it on {', '.join(below)}")
        worse = part[part["accuracy_shorter_won_hi"] < 0.5]
        if not worse.empty:
            shown = "; ".join(
                f"{r.test_source} {_ci(r.accuracy_shorter_won, r.accuracy_shorter_won_lo, r.accuracy_shorter_won_hi)}"
                f" (n = {r.n_shorter_won})"
                for r in worse.itertuples()
            )
            parts.append(f"below chance where the chosen response is the shorter one: {shown}")
        out.append(text + "; ".join(parts) + ".")
    return out


def finding_calibration(table: pd.DataFrame) -> list[str]:
    """One sentence per scheme: what subtracting the length term did to rm_prefers_longer and accuracy, verdicts only
    where the paired 95% CI of after − before excludes 0."""
    out = []
    for scheme, part in table.groupby("scheme", sort=False):
        said = []
        for metric, noun in (("rm_prefers_longer", "preference for the longer response"), ("accuracy", "accuracy")):
            rows = part[part["metric"] == metric]
            down = rows[rows["hi"] < 0]["test_source"].tolist()
            up = rows[rows["lo"] > 0]["test_source"].tolist()
            flat = len(rows) - len(down) - len(up)
            said.append(
                f"{noun} lower on {', '.join(down) or 'no source'}, higher on {', '.join(up) or 'no source'}, "
                f"no detectable change on {flat} of {len(rows)} source(s)"
            )
        out.append(f"**{scheme}+L** − **{scheme}** (length term fitted on the calibration split): " + "; ".join(said))
    return [s + "." for s in out]
