"""Project exceptions: one family, so a caller can catch every workbook error as `MoreError`.

Each error message names the offending thing (key, file:line, source, model) and, where it helps, the valid choices.
"""

import os


class MoreError(Exception):
    """Base class of every error the workbook raises on purpose."""


class ConfigError(MoreError, ValueError):
    """A params file, override or notebook parameter is unknown, mistyped or impossible."""


class DataError(MoreError, ValueError):
    """A preference file or source is malformed, missing or empty."""


class MissingDataError(DataError):
    """A configured source has no data here: no files for it under the data root, or the hub cannot serve it.

    The one `DataError` a study may report as a missing source and carry on; a file that is there but unreadable is a
    plain `DataError` naming file and line, and stops the run."""


class ModelError(MoreError, ValueError):
    """A model name is unknown or a model folder is incomplete."""


class TrainingError(MoreError, RuntimeError):
    """Training hit a non-finite loss, reward or gradient; the last good checkpoint is kept."""


class RunError(MoreError):
    """A run folder cannot be created, resumed or written."""


def offline_hint() -> str:
    """How to go online, when HF_HUB_OFFLINE is set (else ''): appended to errors of hub downloads."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("1", "true", "yes", "on"):
        return ""
    return (
        " — the hub is switched off here (HF_HUB_OFFLINE=1). To go online: unset MORE_OFFLINE (run_all.sh then "
        "goes online for a profile that needs the hub) and unset HF_HUB_OFFLINE, or run with HF_HUB_OFFLINE=0"
    )
