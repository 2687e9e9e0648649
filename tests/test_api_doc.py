"""docs/api.md matches the code: every backticked `module.name` it mentions (a morelib module, then an attribute)
exists, or is a dotted params key of that section (`judge.kind`, `data.sources`)."""

import dataclasses
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import morelib
from morelib.core import config

API = Path(__file__).resolve().parents[1] / "docs" / "api.md"
# short name (`splits`, or a stage folder `data`) → dotted module path
PATHS = {
    m.name.rsplit(".", 1)[-1]: m.name
    for m in sorted(pkgutil.walk_packages(morelib.__path__, "morelib."), key=lambda m: m.name.count("."))
}  # a stage's module wins
MODULES = sorted(PATHS, key=len, reverse=True)
FILE_EXTENSIONS = ("py", "json", "jsonl", "log", "yaml", "csv", "txt", "html", "md", "pt", "ipynb")
# module.name not preceded by a word or dot (cfg.data.x), not a file name (errors.py) and not a pattern (module.k_*)
NAME = re.compile(rf"(?<![\w./])({'|'.join(MODULES)})\.(?!(?:{'|'.join(FILE_EXTENSIONS)})\b)([A-Za-z_]\w*)(?![\w*])")


def _config_key(section: str, key: str) -> bool:
    """Whether `section.key` is a params key (a field of the config section `section`)."""
    field = {f.name: f for f in dataclasses.fields(config.Config)}.get(section)
    return (
        field is not None
        and dataclasses.is_dataclass(field.default)
        and key in {f.name for f in dataclasses.fields(field.default)}
    )


def _mentions() -> list[tuple[str, str]]:
    """(module, name) of every `module.name` inside a backticked span of docs/api.md, in order, without repeats."""
    spans = re.findall(r"`([^`]+)`", API.read_text())
    return list(dict.fromkeys(m for span in spans for m in NAME.findall(span)))


def test_api_doc_mentions_many_names():
    assert (
        len(_mentions()) > 100
    )  # the parser finds the API's names (a broken regex would pass the test below vacuously)


@pytest.mark.parametrize("module,name", _mentions(), ids=lambda x: x)
def test_api_doc_name_exists(module, name):
    mod = importlib.import_module(PATHS[module])
    submodule = f"{PATHS[module]}.{name}" in PATHS.values()  # a stage folder's module: `study.gpu_plan`
    assert hasattr(mod, name) or submodule or _config_key(module, name), (
        f"docs/api.md names `{module}.{name}`, which does not exist"
    )
