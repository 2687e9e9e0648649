"""Run folders: one never-overwritten folder per run, atomic writes, provenance manifest and a timing table.

Layout (STYLE.md): `outputs/<profile>-<YYYYmmdd-HHMMSS>-<git7>/` holds `config.yaml`, `heads/` (reward models shared by
the notebooks of the run) and one folder per notebook with `manifest.json`, `metrics.json`, `tables/*.csv`,
`figures/*.html` (+ `.png` where a static renderer exists), `timings.csv` and the executed notebook. Every file is
written to a temporary name in the same folder and moved into place with `os.replace`, so a crash or a full disk
leaves either the old file or none — never a partial one (checked by monkeypatching the writer in tests/test_runs.py).
Written files get the mode a plain `open` gives (0666 minus the umask; `share`), so a run or a cache folder can be
read by others. `run_all.sh` works through the CLI at the bottom: a run's `config.yaml` is written when the folder is
created, a resume runs the notebooks on that saved config (naming what changed in the profile since), and
relative paths in overrides mean what the caller typed.
Modelled on lm-evaluation-harness' result provenance.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from transformers.utils import logging as hf_logging

from morelib.core import facts, reruns, status
from morelib.core.config import PARAMS_DIR, Config, check_notebook_params, data_root, load_config, parse_overrides
from morelib.core.errors import ConfigError, DataError, MoreError, RunError
from morelib.core.reruns import CONFIG_FILE, output_base

log = logging.getLogger(__name__)
REPO_ROOT = PARAMS_DIR.parent
PACKAGES = ("torch", "transformers", "accelerate", "datasets", "numpy", "scipy", "pandas", "plotly", "papermill")
LOG_FILE = "log.txt"  # <run>/<notebook>/log.txt: every INFO line of the notebook's kernel
STATUS_FILE = "status.log"  # <run>/status.log: the steps and progress lines run_all.sh shows on the terminal
INTERACTIVE_PREFIX = "interactive-"  # <run>/interactive-<stamp>/: a rerun against a finished notebook writes here
LOCK_FILE = ".lock"  # <run>/.lock: run_all.sh holds a flock on it while it works on the run
PATH_KEYS = ("output_root", "data.data_dir")  # overrides that name a folder: resolved against the caller's directory
STATIC_FORMATS = ("png", "svg")  # beside every figure's HTML, for a reader without a browser or for a paper draft
_STATIC: dict[str, Any] = {}  # "error": why static figures are skipped (said once); "server": a renderer is kept open


def git_commit(short: bool = False) -> str:
    """The repository's HEAD commit (7 characters if `short`), or 'nogit' outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "nogit"
    sha = out.stdout.strip() if out.returncode == 0 else ""
    if not sha:
        return "nogit"
    return sha[:7] if short else sha


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape results ('absent' when not installed)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def machine() -> dict[str, Any]:
    """Where the run happened: host, OS, Python, CPU count, accelerator, and what this process measured about the
    machine (`core.facts`: the CPU's bf16 instructions and each bf16-vs-fp32 dtype probe with the dtype it chose)."""
    info: dict[str, Any] = {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    try:
        import torch

        info["cuda"] = torch.cuda.is_available()
        info["gpu"] = torch.cuda.get_device_name(0) if info["cuda"] else None
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["cuda"] = False
    return {**info, **facts.snapshot()}


def share(path: Path) -> Path:
    """Give a written file the mode `open` would (0666 minus the umask): mkstemp and safetensors write 0600."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
    return path


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "w") -> Path:
    """Write `path` via `write(fileobj)` into a temp file beside it, then `os.replace`; on any error no file is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        share(Path(tmp))
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise RunError(f"could not write {path}: {err}") from err
        raise
    return path


def _jsonable(obj: Any) -> Any:
    """Plain JSON data from numpy/torch scalars, tuples and Paths (non-finite floats become None)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _json_part(value: Any, wide: bool) -> Any:
    """A metrics.json part: a DataFrame as records (its index as columns unless a plain range) or, when `wide`, as
    {column: {index: value}}; anything else unchanged."""
    if not isinstance(value, pd.DataFrame):
        return value
    if wide:
        return value.to_dict()
    return (value if isinstance(value.index, pd.RangeIndex) else value.reset_index()).to_dict("records")


def new_run_id(cfg: Config) -> str:
    """`<profile>-<YYYYmmdd-HHMMSS>-<git7>` for a fresh run of `cfg`."""
    return f"{cfg.profile}-{datetime.now():%Y%m%d-%H%M%S}-{git_commit(short=True)}"


def create_run_dir(cfg: Config, root: str | Path | None = None) -> Path:
    """Create a new, empty run folder under `root` (default cfg.output_root); never reuses an existing one."""
    base = Path(root or cfg.output_root)
    if not base.is_absolute():
        base = REPO_ROOT / base
    base.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id(cfg)
    for n in range(1000):
        path = base / (run_id if n == 0 else f"{run_id}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RunError(f"could not find a free run folder name for {run_id} under {base}")


def latest_run_dir(cfg: Config, any_profile: bool = False) -> Path:
    """The newest finished run under cfg.output_root: of cfg.profile, or of any profile (`reruns.latest_run`)."""
    return reruns.latest_run(output_base(cfg), None if any_profile else cfg.profile)


@dataclass
class Run:
    """One notebook's view of a run folder: where it writes and what it has timed."""

    root: Path
    notebook: str
    cfg: Config
    timings: list[tuple[str, float]] = field(default_factory=list)
    manifest_extra: dict[str, Any] = field(default_factory=dict)
    sub: str = ""  # "interactive-<stamp>" when this notebook already finished in the run: its files stay untouched

    @property
    def dir(self) -> Path:
        """This notebook's folder inside the run (inside `sub` for an interactive rerun)."""
        return self.root / self.sub / self.notebook if self.sub else self.root / self.notebook

    @property
    def heads_dir(self) -> Path:
        """Folder of reward models shared by all notebooks of the run (a rerun reads them, never writes there)."""
        return self.root / "heads"

    @property
    def save_heads_dir(self) -> Path:
        """Where this notebook saves the RMs it fits: the run's heads/, or `interactive-<stamp>/heads/` in a rerun."""
        return self.root / self.sub / "heads" if self.sub else self.heads_dir

    @property
    def cache_dir(self) -> Path:
        """Content-keyed feature cache shared across runs (outputs/cache): keyed by content, so a rerun may read and
        add to it; it is no part of any run folder."""
        return output_base(self.cfg) / "cache"

    def save_json(self, name: str, data: Any) -> Path:
        """Write `data` as `<notebook>/<name>.json` (e.g. name='metrics')."""
        text = json.dumps(_jsonable(data), indent=2, sort_keys=True, allow_nan=False)
        return atomic_write(self.dir / f"{name}.json", lambda fh: fh.write(text + "\n"))

    def save_metrics(self, *, file: str = "metrics", wide: Sequence[str] = (), **parts: Any) -> Path:
        """Write `<notebook>/<file>.json` from named parts: a DataFrame as records (a non-range index becomes columns),
        or as {column: {index: value}} when its name is in `wide`; any other value as given."""
        unknown = [name for name in wide if name not in parts]
        if unknown:
            raise RunError(f"save_metrics: wide={unknown} names no part (parts: {sorted(parts)})")
        return self.save_json(file, {name: _json_part(value, name in wide) for name, value in parts.items()})

    def save_table(self, name: str, table: pd.DataFrame) -> pd.DataFrame:
        """Write `table` as `<notebook>/tables/<name>.csv` and return it (a cell can end with the call)."""
        if not isinstance(table, pd.DataFrame):
            raise RunError(f"save_table('{name}') needs a pandas DataFrame, got {type(table).__name__}")
        text = table.to_csv(index=not isinstance(table.index, pd.RangeIndex))
        atomic_write(self.dir / "tables" / f"{name}.csv", lambda fh: fh.write(text))
        return table

    def save_figure(self, name: str, fig: Any) -> Any:
        """Write a plotly figure as `<notebook>/figures/<name>.html` (plotly.js beside it), `.png` and `.svg`; return
        it."""
        figdir = self.dir / "figures"
        js = figdir / "plotly.min.js"
        if not js.exists():
            from plotly.offline import get_plotlyjs

            atomic_write(js, lambda fh: fh.write(get_plotlyjs()))
        html = fig.to_html(include_plotlyjs="directory", full_html=True)
        atomic_write(figdir / f"{name}.html", lambda fh: fh.write(html))
        for fmt in STATIC_FORMATS:
            self._save_static(figdir / f"{name}.{fmt}", fig)
        return fig

    def _save_static(self, path: Path, fig: Any) -> None:
        """Write a static image (format from the suffix) when a renderer is here: plotly's kaleido and a Chrome or
        Chromium (on PATH, or named by BROWSER_PATH); otherwise say why once per process and skip."""
        if "error" in _STATIC:
            return
        try:
            image = render_static(fig, path.suffix[1:])
        except (ImportError, ValueError, RuntimeError) as err:
            _STATIC["error"] = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            log.warning(
                "PNG/SVG figures skipped: no static renderer here (%s); HTML is written. `pip install kaleido` and a "
                "Chrome/Chromium on PATH (or BROWSER_PATH=<its path>) add them.",
                _STATIC["error"],
            )
            return
        atomic_write(path, lambda fh: fh.write(image), mode="wb")

    def save_manifest(self, **extra: Any) -> Path:
        """Write `<notebook>/manifest.json`: config, git commit, packages, seeds, machine, timings and `extra`."""
        self.manifest_extra.update(extra)
        manifest = {
            "run_id": self.root.name,
            "notebook": self.notebook,
            "profile": self.cfg.profile,
            "git_commit": git_commit(),
            "seeds": list(self.cfg.seeds),
            "config": self.cfg.to_dict(),
            "packages": package_versions(),
            "machine": machine(),
            "written": datetime.now().isoformat(timespec="seconds"),
            "timings_s": dict(self.timings),
            **self.manifest_extra,
        }
        return self.save_json("manifest", manifest)

    @contextlib.contextmanager
    def timer(self, step: str) -> Iterator[None]:
        """Time the enclosed block as `step` in this notebook's timing table."""
        start = time.perf_counter()
        status.report(f"step: {step}")
        try:
            yield
        finally:
            self.timings.append((step, round(time.perf_counter() - start, 3)))

    def timing_table(self) -> pd.DataFrame:
        """Seconds per timed step, with a total row."""
        table = pd.DataFrame(self.timings, columns=["step", "seconds"])
        total = pd.DataFrame([("total", round(float(table["seconds"].sum()), 3))], columns=["step", "seconds"])
        return pd.concat([table, total], ignore_index=True)

    def finish(self) -> pd.DataFrame:
        """Save the timing table and manifest; return the timing table (for display)."""
        table = self.timing_table()
        self.save_table("timings", table)
        self.save_manifest()
        return table

    def is_done(self, notebook: str) -> bool:
        """Whether `notebook` ran to its end in this run (`reruns.notebook_finished`)."""
        return reruns.notebook_finished(self.root, notebook)


def render_static(fig: Any, fmt: str) -> bytes:
    """A plotly figure as `fmt` (png, svg) bytes by kaleido; after the first success the renderer stays open for the
    rest of the process (one browser start, not one per image; kaleido closes it at exit)."""
    import kaleido

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The kopts argument is ignored")
        image = fig.to_image(format=fmt)
    if not _STATIC.get("server"):
        kaleido.start_sync_server(silence_warnings=True)
        _STATIC["server"] = True
    return image


def config_text(cfg: Config) -> str:
    """The YAML of a run's config.yaml (load_config reads it back as a profile)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def open_run(cfg: Config, run_dir: str | Path | None, notebook: str) -> Run:
    """Open the run folder `run_dir` (created when empty/None; 'latest' = the newest finished run of this profile) for
    `notebook`; a notebook that already finished there writes only under `<run>/interactive-<stamp>/`."""
    if not notebook or "/" in notebook:
        raise RunError(f"notebook name must be a plain folder name, got {notebook!r}")
    if run_dir in (None, ""):
        root = create_run_dir(cfg)
    elif str(run_dir) == "latest":
        root = latest_run_dir(cfg)
    else:
        root = Path(run_dir)
        root.mkdir(parents=True, exist_ok=True)
    sub = f"{INTERACTIVE_PREFIX}{datetime.now():%Y%m%d-%H%M%S}" if reruns.notebook_finished(root, notebook) else ""
    run = Run(root=root.resolve(), notebook=notebook, cfg=cfg, sub=sub)
    if not (root / CONFIG_FILE).exists():
        atomic_write(root / CONFIG_FILE, lambda fh: fh.write(config_text(cfg)))
    run.dir.mkdir(parents=True, exist_ok=True)
    if sub:
        log.warning(
            "%s already finished in %s: this rerun writes into %s and reuses the run's RMs", notebook, root, run.dir
        )
    return run


def log_to_file(run: Run, level: int = logging.INFO) -> Path:
    """Send log lines of `level` and above to `<notebook dir>/log.txt`; only warnings reach the notebook's output.

    Also points status lines (`morelib.core.status`) at `<run>/status.log` and turns off transformers' progress bars.
    """
    path = run.dir / LOG_FILE
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    to_file = logging.FileHandler(path)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    visible = logging.StreamHandler()
    visible.setLevel(logging.WARNING)
    visible.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(to_file)
    root.addHandler(visible)
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    hf_logging.disable_progress_bar()
    status.set_target(run.root / run.sub / STATUS_FILE, run.notebook + (f" ({run.sub})" if run.sub else ""))
    return path


def start(profile: str, run_dir: str, overrides: str | dict | None, notebook: str, **params: Any) -> Run:
    """Validate a notebook's parameters (load_config; its own `params` by config.check_notebook_params) and open its
    run folder (run.cfg is the config). With `run_dir` set (a run's path, or 'latest': the newest finished run, of
    any profile when `profile` is 'default') the run's own config.yaml is the config (`reruns.run_config`: a
    conflicting profile or override is refused; 'default' stands for the run's profile)."""
    for name, value in (("profile", profile), ("run_dir", run_dir)):
        if not isinstance(value, (str, Path)) and not (name == "run_dir" and value is None):
            raise ConfigError(f"notebook parameter '{name}' must be a string, got {type(value).__name__}: {value!r}")
    extra = parse_overrides(overrides)
    cfg = load_config(profile, extra)
    if run_dir not in (None, ""):
        latest = str(run_dir) == "latest"
        run_dir = latest_run_dir(cfg, str(profile) == reruns.DEFAULT_PROFILE) if latest else Path(run_dir)
        if (run_dir / CONFIG_FILE).is_file():
            cfg, note = reruns.run_config(run_dir, profile, extra, cfg)
            if note:
                print(note)
    check_notebook_params(cfg, **params)
    return open_run(cfg, run_dir, notebook)


def resume_dir(run_id: str, root: str | Path | None = None) -> Path:
    """The existing run folder `run_id` (a path, or an id under `root`, default outputs/) to continue; RunError if
    absent."""
    base = Path(root) if root else REPO_ROOT / "outputs"
    path = Path(run_id) if Path(run_id).is_absolute() else base / run_id
    if not (path / reruns.RUN_ALL_FILE).exists():
        raise RunError(
            f"no run to resume at {path} (expected {path / 'run_all.json'} written by run_all.sh); a run made "
            f"with -p output_root DIR lives in DIR: pass its path, e.g. ./run_all.sh --resume DIR/{Path(run_id).name}"
        )
    return path


def config_changes(saved: Config, profile: str, overrides: dict[str, Any]) -> list[str]:
    """What `profile` + `overrides` give now that differs from a run's saved config: ["key: saved → now", ...]."""
    try:
        now = load_config(profile, overrides)
    except MoreError as err:
        return [f"profile '{profile}' no longer loads ({err})"]
    return reruns.differences(saved, now)


def resume_plan(run_id: str, root: str | Path | None = None) -> dict[str, str]:
    """What `run_all.sh --resume` runs: the run folder, its saved config.yaml as the notebooks' profile (no overrides),
    its --only and data root, and `note`, naming what the profile would give now that differs (not used)."""
    run = resume_dir(run_id, root)
    spec = json.loads((run / reruns.RUN_ALL_FILE).read_text())
    plan = {"run": str(run), "only": spec.get("only", ""), "data_root": spec.get("data_root", ""), "note": ""}
    saved = run / CONFIG_FILE
    if not saved.is_file():  # made before run_all wrote config.yaml at creation, and stopped before a notebook opened
        cfg = load_config(spec["profile"], spec["overrides"])
        atomic_write(saved, lambda fh: fh.write(config_text(cfg)))
    try:
        cfg = load_config(saved)
    except ConfigError as err:
        raise RunError(
            f"cannot resume {run}: its saved {saved.name} no longer loads with this code ({err}); it was made at "
            f"commit {spec.get('git_commit', '?')[:7]}: start a new run, or check that commit out to resume it"
        ) from err
    changes = config_changes(cfg, spec["profile"], spec["overrides"])
    if changes:
        plan["note"] = (
            f"the profile '{spec['profile']}' changed since this run started ({'; '.join(changes)}); the resume "
            f"keeps the run's saved {saved} so its notebooks agree: start a new run for the new settings"
        )
    return {**plan, "profile": str(saved), "overrides": "{}"}


def resolve_paths(overrides: dict[str, Any], base: Path) -> dict[str, Any]:
    """Overrides with the relative folders of PATH_KEYS made absolute against `base` (the caller's directory), so they
    mean what the user typed wherever a notebook runs ("hub" and null stay)."""
    out = dict(overrides)
    for key in PATH_KEYS:
        value = out.get(key)
        if isinstance(value, str) and value not in ("", "hub"):
            out[key] = str((base / Path(value).expanduser()).resolve())
    return out


def preflight(cfg: Config) -> None:
    """Checks run_all.sh makes before a run folder exists: the local data folder is there (unless data comes from the
    hub or the run needs no real data)."""
    root = data_root(cfg)
    if root is None or root.is_dir():
        return
    origin = (
        "data.data_dir"
        if cfg.data.data_dir
        else "MORE_DATA_DIR"
        if os.environ.get("MORE_DATA_DIR")
        else "the default ../shared/data"
    )
    raise DataError(f"data directory not found: {root} (from {origin}); nothing was created")


def hub_needs(cfg: Config) -> list[str]:
    """What this run fetches from the Hugging Face hub: 'data' (data_dir: hub) and model ids that are neither
    registry names (no '/') nor local folders (model, RJS policy, local judge, RM judge backbone)."""
    judges = {"local": cfg.judge.model, "minilm-rm": cfg.judge.rm.model}
    models = [cfg.model.name, cfg.rjs.policy] + [judges[k] for k in cfg.judge.kinds if k in judges]
    hub = [
        m
        for m in dict.fromkeys(models)
        if "/" in m and not m.startswith((".", "/", "~")) and not Path(m).expanduser().is_dir()
    ]
    return (["data"] if cfg.data.data_dir == "hub" else []) + hub


def create(profile: str, overrides: dict[str, Any], only: str = "") -> Path:
    """A fresh run folder for run_all.sh with its config.yaml (what every notebook of the run loads) and run_all.json
    (profile, overrides, --only, data root, commit)."""
    cfg = load_config(profile, overrides)
    preflight(cfg)
    root = create_run_dir(cfg)
    atomic_write(root / CONFIG_FILE, lambda fh: fh.write(config_text(cfg)))
    data = data_root(cfg)
    spec = {
        "profile": profile,
        "overrides": overrides,
        "git_commit": git_commit(),
        "only": only,
        "data_root": str(data.resolve()) if data is not None else "hub",
    }
    atomic_write(root / reruns.RUN_ALL_FILE, lambda fh: fh.write(json.dumps(spec, indent=2) + "\n"))
    return root


def _main(argv: list[str]) -> str:
    """CLI for run_all.sh: `overrides K=V ...` → JSON (relative folders resolved against the current directory);
    `check PROFILE JSON` → validates and preflights, printing a summary; `create PROFILE JSON [ONLY]` → new run folder;
    `resume RUN_ID` → run, profile, overrides, only, data root (one a line; a changed profile named on stderr);
    `needs-hub PROFILE JSON` → yes/no (scripts/setup.sh's hub_mode)."""
    if argv[:1] == ["overrides"]:
        return json.dumps(resolve_paths(parse_overrides(argv[1:]), Path.cwd()))
    if argv[:1] == ["check"] and len(argv) == 3:
        cfg = load_config(argv[1], parse_overrides(argv[2]))
        preflight(cfg)
        root = data_root(cfg)
        return f"config valid: profile {cfg.profile}, sources {cfg.source_names()}, data {root or 'hub'}"
    if argv[:1] == ["create"] and len(argv) in (3, 4):
        return str(create(argv[1], parse_overrides(argv[2]), argv[3] if len(argv) == 4 else ""))
    if argv[:1] == ["resume"] and len(argv) == 2:
        plan = resume_plan(argv[1])
        if plan["note"]:
            print(f"[run_all] note: {plan['note']}", file=sys.stderr)
        return "\n".join(plan[k] for k in ("run", "profile", "overrides", "only", "data_root"))
    if argv[:1] == ["needs-hub"] and len(argv) == 3:
        return "yes" if hub_needs(load_config(argv[1], parse_overrides(argv[2]))) else "no"
    raise RunError(
        f"usage: python -m morelib.core.runs overrides K=V ... | check PROFILE OVERRIDES_JSON | create PROFILE "
        f"OVERRIDES_JSON [ONLY] | resume RUN_ID | needs-hub PROFILE OVERRIDES_JSON (got {argv})"
    )


if __name__ == "__main__":
    try:
        print(_main(sys.argv[1:]))
    except MoreError as err:
        sys.exit(f"{type(err).__name__}: {err}")
