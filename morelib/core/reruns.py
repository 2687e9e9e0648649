"""Reruns: which run folder a notebook reopens, on which config, and what counts as finished (issue 27 A).

A notebook finished in a run when run_all.sh marked it (`<run>/<notebook>/.done`) or its last cell wrote its manifest
(`Run.finish`); a run finished when every notebook it was to run finished — run_all.json's `--only` (every notebook
of notebooks/ when empty) or, for a run made without run_all.sh, the notebook folders it holds (at least one).
`run_dir="latest"` is the newest finished run under output_root (by the stamp in its name), of any profile when the
notebook's profile is the default, else of that profile. With `run_dir` set, the run's own `config.yaml` is the
config. Papermill cannot tell an explicit `profile="default"` from an omitted one, so 'default' stands for "the run's
own profile" (said in one printed line when the run's is another); any other profile must be the run's (its name, or
the path of its config.yaml), and overrides must change no key of it, else one ConfigError names both profiles and
what to pass. Checked in tests/test_reruns.py: every notebook rerun against a finished tiny run leaves every file
outside `interactive-*` byte-identical.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from morelib.core.config import PARAMS_DIR, Config, load_config, with_overrides
from morelib.core.errors import ConfigError, RunError

DEFAULT_PROFILE = "default"  # the notebooks' parameters default: with run_dir set it means "the run's own profile"
DONE_MARKER = ".done"  # <run>/<notebook>/.done: run_all.sh marks a notebook it ran to the end
MANIFEST_FILE = "manifest.json"  # <run>/<notebook>/manifest.json: written by Run.finish, a notebook's last cell
CONFIG_FILE = "config.yaml"  # <run>/config.yaml: the run's whole config, written at creation; a rerun runs on it
RUN_ALL_FILE = "run_all.json"  # <run>/run_all.json: run_all.sh's profile, overrides and --only
NOTEBOOKS_DIR = PARAMS_DIR.parent / "notebooks"
NOTEBOOK_DIR = re.compile(r"\d\d_\w+")  # a notebook's folder inside a run: 01_diversity, 02_more_training, ...
STAMP = re.compile(r"\d{8}-\d{6}")  # the <YYYYmmdd-HHMMSS> of a run folder's name


def output_base(cfg: Config) -> Path:
    """cfg.output_root as an absolute folder (a relative one is under the repository)."""
    base = Path(cfg.output_root)
    return base if base.is_absolute() else PARAMS_DIR.parent / base


def notebook_finished(root: Path, notebook: str) -> bool:
    """Whether `notebook` ran to its end in the run `root` (its .done marker or its manifest is there)."""
    folder = Path(root) / notebook
    return (folder / DONE_MARKER).exists() or (folder / MANIFEST_FILE).exists()


def expected_notebooks(root: Path) -> list[str]:
    """The notebooks the run `root` was to run: run_all.json's --only (all of notebooks/ when empty), else the
    notebook folders it holds."""
    spec = Path(root) / RUN_ALL_FILE
    if spec.is_file():
        only = str(json.loads(spec.read_text()).get("only", "")).split(",")
        names = sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
        return [n for n in names if n[:2] in only] if any(only) else names
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and NOTEBOOK_DIR.fullmatch(p.name))


def run_finished(root: Path) -> bool:
    """Whether every notebook the run `root` was to run finished (a run with none is not finished)."""
    names = expected_notebooks(root)
    return bool(names) and all(notebook_finished(root, n) for n in names)


def _stamp(root: Path) -> str:
    """A run's creation stamp: from its name, else its config.yaml's modification time."""
    found = STAMP.search(root.name)
    return found.group() if found else f"{datetime.fromtimestamp((root / CONFIG_FILE).stat().st_mtime):%Y%m%d-%H%M%S}"


def saved_profile(root: Path) -> str:
    """The profile name in a run's config.yaml ('' when it names none)."""
    data = yaml.safe_load((root / CONFIG_FILE).read_text()) or {}
    return str(data.get("profile", "")) if isinstance(data, dict) else ""


def latest_run(base: Path, profile: str | None = None) -> Path:
    """The newest finished run folder under `base` (of `profile` when given); RunError pointing at run_all.sh when
    there is none."""
    runs = [p for p in base.glob("*") if (p / CONFIG_FILE).is_file()] if base.is_dir() else []
    runs = sorted(
        (p for p in runs if profile is None or saved_profile(p) == profile), key=lambda p: (_stamp(p), p.name)
    )
    finished = [p for p in runs if run_finished(p)]
    if finished:
        return finished[-1]
    which = f" '{profile}'" if profile else ""
    command = f"./run_all.sh --profile {profile}" if profile and profile != DEFAULT_PROFILE else "./run_all.sh"
    if runs and (runs[-1] / RUN_ALL_FILE).is_file():  # run_all.sh can finish it (by id when under outputs/)
        named = runs[-1].name if base.resolve() == (PARAMS_DIR.parent / "outputs").resolve() else runs[-1]
        command += f" (or finish the newest of {len(runs)} unfinished: ./run_all.sh --resume {named})"
    raise RunError(f"no finished{which} run under {base}; run {command} first, or pass run_dir='' to start a new run")


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a.b.c": value} of a nested config dict."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(old: Config, new: Config) -> list[str]:
    """Keys whose value differs between two configs: ["key: old → new", ...]."""
    a, b = _flat(old.to_dict()), _flat(new.to_dict())
    return [f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def run_config(root: Path, profile: str | Path, overrides: dict[str, Any], asked: Config) -> tuple[Config, str]:
    """The config a notebook reruns the run `root` on (its saved config.yaml) and a note for the user ('' if none).

    `asked` is load_config(profile, overrides). ConfigError when `profile` is neither 'default' nor the run's, or
    when `overrides` change a key of the run's config.
    """
    path = root / CONFIG_FILE
    try:
        saved = load_config(path)
    except ConfigError as err:
        raise RunError(f"{path} no longer loads with this code ({err}); pass run_dir='' to start a new run") from err
    by_default = str(profile) == DEFAULT_PROFILE
    if not by_default and asked.profile != saved.profile:
        raise ConfigError(
            f"profile '{asked.profile}' conflicts with run {root.name}, made with profile '{saved.profile}': a rerun "
            f"uses the run's own config; pass profile='{saved.profile}' (or leave profile='default') to rerun it, or "
            f"run_dir='' to start a new '{asked.profile}' run"
        )
    changed = differences(saved, with_overrides(saved, overrides))
    if changed:
        raise ConfigError(
            f"overrides change run {root.name} (profile '{saved.profile}'): {'; '.join(changed)}; a rerun uses the "
            f"run's own config: drop those overrides, or pass run_dir='' to start a new run with them"
        )
    if by_default and saved.profile != DEFAULT_PROFILE:
        return saved, f"run {root.name} was made with profile '{saved.profile}': this notebook runs on its {path}"
    return saved, ""
