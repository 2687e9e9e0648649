"""The explorer in a real front-end: JupyterLab (loopback, own token) + Debian's headless chromium via Playwright.

A small notebook on the synthetic benchmark (no model needed) is generated into a temporary folder, every cell is
run, the first λ slider is moved with the keyboard, and the test checks that the plotly figure's numbers and the
status line changed; that CI whiskers, the ECE floor band and the ghost markers are drawn; that the slider tracks
start at one x and the figure fills its output area; that loading a saved uniform choice resets the MORE step
readout; and that an ECE above the panel's cap shows a ▲ mark. A screenshot lands in the test's run folder; with
MORE_UPDATE_SCREENSHOT=1 (or when missing) it is also copied to docs/explorer.png. Skipped when /usr/bin/chromium or
Playwright is absent. Playwright never downloads a browser here: it drives the system chromium through
`executable_path`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
TOKEN = "explore-test-token"
SCREENSHOT_LIMIT = 300_000  # bytes: docs/explorer.png stays small enough for the README

if not CHROMIUM.exists():
    pytest.skip("no /usr/bin/chromium (apt-get install -y chromium); browser test skipped", allow_module_level=True)
playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")

CELLS = [
    """from morelib.explore import engine, reference, widgets
from morelib.core.config import load_config
from morelib.synthetic.synthetic import make_drift_benchmark""",
    """cfg = load_config("tiny", {"explore.train_pairs_per_source": 400, "explore.head_epochs": 4,
                           "explore.batch_per_source": 50, "explore.debounce_ms": 150})
bench = make_drift_benchmark(3, 32, 400, 1.0, seed=0, n_calib=10, n_test=300, names=["helpful", "harmless", "oasst1"])
marks = {"multitask": {s: {"accuracy": 0.6, "ece_10": 0.05, "seeds": 3} for s in bench.test}}
study = reference.StudyRefs(marks=marks)
ex = engine.Explorer(bench.train, bench.test, cfg.train, cfg.head, cfg.explore, out_dir="run", study=study)""",
    """ui = widgets.ExplorerUI(ex, views=("lambda",))
ui.widget""",
]


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_notebook(folder: Path) -> Path:
    """The demo notebook (no outputs) in `folder`."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    path = folder / "explore_demo.ipynb"
    nbformat.write(nb, path)
    return path


def lab_settings(folder: Path) -> Path:
    """A JupyterLab user-settings folder that turns off news and update checks (no traffic beyond loopback)."""
    target = folder / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    return folder


def request(url: str, method: str = "GET") -> int:
    """HTTP status of a loopback request carrying the test's token (0 when nothing answers)."""
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"token {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


def our_kernels(runtime: Path) -> list[int]:
    """Pids of kernels whose connection file lies in this test's runtime folder (started by this test only)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if str(runtime) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
    return pids


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on 127.0.0.1 serving tmp_path; shut down (kernels included) at teardown."""
    port, runtime = free_port(), tmp_path / "runtime"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "JUPYTERLAB_SETTINGS_DIR": str(lab_settings(tmp_path / "lab-settings")),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    work = tmp_path / "work"
    work.mkdir()
    write_notebook(work)
    cmd = [
        str(Path(sys.executable).with_name("jupyter-lab")),
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={work}",
        "--expose-app-in-browser",
        "--LabApp.news_url=None",
        "--LabApp.extension_manager=readonly",
        "--ServerApp.terminals_enabled=False",
        "--allow-root",
    ]
    log = (tmp_path / "jupyter.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while request(f"{base}/api/status") != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not start: {(tmp_path / 'jupyter.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield {"base": base, "work": work}
    finally:
        request(f"{base}/api/shutdown", method="POST")
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        for pid in our_kernels(runtime):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        log.close()


BARS_JS = """const gd = document.querySelector('.js-plotly-plot');
        const tagged = (m) => gd.data.find(t => t.meta === m);"""


def figure_numbers(page) -> list[list[float]]:
    """The y values of the accuracy and ECE bar traces of the explorer's plotly figure, read from the DOM."""
    return page.evaluate(f"""() => {{ {BARS_JS}
        return [gd.layout.xaxis.ticktext, tagged('acc:fixed').y, tagged('ece:fixed').y].map(a => Array.from(a));
    }}""")


def wait_for_new_numbers(page, before: list[list[float]]) -> None:
    """Wait (page timeout) until the figure's bar values differ from `before`: the status line changes first."""
    page.wait_for_function(
        f"""(old) => {{ {BARS_JS}
        return JSON.stringify([tagged('acc:fixed').y, tagged('ece:fixed').y].map(a => Array.from(a))) !== old;
    }}""",
        arg=json.dumps(before[1:]),
    )


def drawn(page) -> dict:
    """What chromium drew: whisker paths, grey floor-band bars with a height in the ECE panel, ghost marker points,
    ▲ texts, the figure's and its output area's widths, and the left x of every slider track."""
    return page.evaluate("""() => {
        const gd = document.querySelector('.js-plotly-plot');
        const ece = Array.from(gd.querySelectorAll('.subplot.x2y2 .barlayer .point path'));
        const grey = ece.filter(p => p.style.fill === 'rgb(127, 127, 127)' && p.getBBox().height > 1);
        const ghosts = gd.data.filter(t => String(t.meta).startsWith('ghost:')).length;
        return {
            whiskers: gd.querySelectorAll('g.errorbar path').length,
            floor_bars: grey.length,
            ghost_traces: ghosts,
            ghost_points: gd.querySelectorAll('.scatterlayer .trace .points path').length,
            overflow: Array.from(gd.querySelectorAll('.textpoint text')).map(t => t.textContent),
            width: gd._fullLayout.width,
            area: gd.closest('.jp-OutputArea-output').clientWidth,
            tracks: Array.from(document.querySelectorAll('.widget-slider .noUi-target'))
                .map(e => Math.round(e.getBoundingClientRect().left)),
        };
    }""")


def kernel_run(page, code: str) -> None:
    """Run `code` in the notebook's kernel (outside its cells), as a user would in a scratch cell."""
    page.evaluate(
        """async (code) => {
        const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
        await kernel.requestExecute({code: code, silent: false, store_history: false}).done;
    }""",
        code,
    )


def click_and_wait(page, button: str) -> None:
    """Click the widget button labelled `button` and wait until the status line changes."""
    before = status_text(page)
    page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_function("(s) => document.querySelector('.explore-status').innerText !== s", arg=before)


def step_note(page) -> str:
    """The readout beside the MORE step slider."""
    return page.locator(".explore-step").first.inner_text()


def kernel_print(page, expression: str) -> str:
    """What the notebook's kernel prints for `expression` (run outside the notebook's cells)."""
    return page.evaluate(
        """async (code) => {
        const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
        const future = kernel.requestExecute({code: code, silent: false, store_history: false});
        let text = '';
        future.onIOPub = (msg) => { if (msg.header.msg_type === 'stream') { text += msg.content.text; } };
        await future.done;
        return text;
    }""",
        f"print({expression})",
    )


def status_text(page) -> str:
    """The explorer's status line."""
    return page.locator(".explore-status").first.inner_text()


def open_and_run_all(page, base: str) -> None:
    """Open the demo notebook, wait for its kernel, hide the side bar and run every cell until the figure is drawn."""
    page.goto(f"{base}/lab/tree/explore_demo.ipynb?token={TOKEN}")
    page.wait_for_function("() => window.jupyterapp && document.querySelector('.jp-Notebook')")
    page.wait_for_function("""() => {
        const w = window.jupyterapp.shell.currentWidget;
        return w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel
            && w.sessionContext.session.kernel.status === 'idle';
    }""")
    page.evaluate("() => window.jupyterapp.commands.execute('application:toggle-left-area')")
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_selector(".explore-status")
    page.wait_for_function(  # the first render loads plotly's widget bundle: slow on a loaded 2-core machine
        "() => { const g = document.querySelector('.js-plotly-plot'); return g && g.data && g.data.length > 2; }",
        timeout=120_000,
    )


def drag_first_slider(page, presses: int = 30) -> None:
    """Focus the first λ slider's handle and press ArrowRight `presses` times, then wait for the status to change."""
    before = status_text(page)
    page.locator(".widget-slider .noUi-handle").first.focus()
    for _ in range(presses):
        page.keyboard.press("ArrowRight")
    page.wait_for_function("(s) => document.querySelector('.explore-status').innerText !== s", arg=before)


def load_uniform_after_more(page) -> dict[str, str]:
    """Save the uniform choice, apply MORE's final λ, load the saved choice back: the step readout before and after."""
    click_and_wait(page, "uniform (MultiTask)")
    page.get_by_role("button", name="save λ").click()
    page.wait_for_function("() => document.querySelectorAll('.widget-dropdown select option').length > 0")
    click_and_wait(page, "MORE final λ")
    more = step_note(page)
    page.locator(".widget-dropdown select").select_option(index=0)
    click_and_wait(page, "load")
    page.wait_for_function("() => document.body.innerText.includes('not a MORE step')")
    return {"more": more, "after": step_note(page)}


def test_slider_moves_the_figure(lab, tmp_path):
    shot = lab["work"] / "run" / "explorer.png"
    with playwright_sync.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1000, "height": 1300},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            open_and_run_all(page, lab["base"])
            before_status, before = status_text(page), figure_numbers(page)
            assert "mean accuracy" in before_status, before_status
            drag_first_slider(page)
            wait_for_new_numbers(page, before)
            after_status, after = status_text(page), figure_numbers(page)
            refits = int(kernel_print(page, "ui.refits['lambda']"))
            seen = drawn(page)
            shot.parent.mkdir(exist_ok=True)
            page.locator(".jp-OutputArea-output").last.screenshot(path=str(shot))
            loaded = load_uniform_after_more(page)
            kernel_run(page, "ui.lambda_fig.layout.yaxis2.range = (0, 0.01)")  # a cap below every ECE
            click_and_wait(page, "size-proportional (plain mixing)")
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .textpoint text').length > 0")
            overflow = drawn(page)["overflow"]
        finally:
            context.close()
    assert 1 <= refits < 30, f"30 key presses gave {refits} refits: the drag was not debounced"
    assert after[0] == ["helpful", "harmless", "oasst1"], after[0]
    assert after[1:] != before[1:], (before, after)
    lam = re.search(r"helpful ([0-9.]+)", after_status)
    assert lam and float(lam.group(1)) > 0.4, after_status
    assert re.search(r"update [0-9.]+ s", after_status), after_status
    assert seen["whiskers"] >= 6 and seen["floor_bars"] == 3, seen  # accuracy + ECE whiskers; one band per source
    assert seen["ghost_traces"] == 2 and seen["ghost_points"] >= 6, seen  # the study's MultiTask in both bar panels
    assert seen["width"] > 700 and seen["width"] >= 0.9 * seen["area"], seen  # sized to its output area
    assert len(seen["tracks"]) == 4 and len(set(seen["tracks"])) == 1, seen  # λ sliders and MORE step aligned
    assert loaded["more"].startswith("showing MORE's λ at step") and "not a MORE step" in loaded["after"], loaded
    assert overflow and all(re.fullmatch(r"▲ 0\.[0-9]{3}", t) for t in overflow), overflow
    assert shot.stat().st_size > 10_000
    docs = REPO / "docs" / "explorer.png"
    wanted = os.environ.get("MORE_UPDATE_SCREENSHOT") == "1" or not docs.exists()
    if wanted and shot.stat().st_size < SCREENSHOT_LIMIT:
        shutil.copyfile(shot, docs)
