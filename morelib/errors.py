"""Project exceptions: one family, so a caller can catch every workbook error as `MoreError`.

Each error message names the offending thing (key, file:line, source, model) and, where it helps, the valid choices.
"""


class MoreError(Exception):
    """Base class of every error the workbook raises on purpose."""


class ConfigError(MoreError, ValueError):
    """A params file, override or notebook parameter is unknown, mistyped or impossible."""


class DataError(MoreError, ValueError):
    """A preference file or source is malformed, missing or empty."""


class ModelError(MoreError, ValueError):
    """A model name is unknown or a model folder is incomplete."""


class TrainingError(MoreError, RuntimeError):
    """Training hit a non-finite loss, reward or gradient; the last good checkpoint is kept."""


class RunError(MoreError):
    """A run folder cannot be created, resumed or written."""
