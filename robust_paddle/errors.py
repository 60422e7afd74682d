"""The error hierarchy: errors a user can fix, each reported by the CLI as one line with exit status 2.

Every error that bad input (a config value, a CLI flag, a file, an image, a text, an HTTP request, a
checkpoint) can cause is a :class:`RobustPaddleError` subclass whose message names what is wrong (the
config key, or ``file:line``), the value given and what is allowed. Anything else that escapes is a bug:
the CLI keeps its traceback and exits 1.

The subclasses also derive from the built-in exception that the same condition raised before this
hierarchy existed (``ValueError`` or ``RuntimeError``), so ``except ValueError`` in user code keeps
working.
"""

from __future__ import annotations

__all__ = ["RobustPaddleError", "ConfigError", "DataError", "CheckpointError", "CompatibilityError",
           "TrainingError", "MissingDependencyError"]


class RobustPaddleError(Exception):
    """Base class of every error a user can fix (CLI: one line, exit 2)."""


class ConfigError(RobustPaddleError, ValueError):
    """A configuration value or CLI flag is wrong; the message names the key, the value and what is allowed."""


class DataError(RobustPaddleError, ValueError):
    """A data file, sample, label or request body is unusable; the message names ``file:line`` or the sample."""


class CheckpointError(RobustPaddleError, ValueError):
    """A checkpoint or weights file is unreadable, unsafe, or does not match the config it is used with."""


class CompatibilityError(RobustPaddleError, RuntimeError):
    """The installed Paddle (or an optional library) cannot do what was asked; the message names versions."""


class TrainingError(RobustPaddleError, RuntimeError):
    """Training cannot continue (e.g. a non-finite loss); the last good checkpoint is left intact."""


class MissingDependencyError(CompatibilityError, ImportError):
    """An optional library a feature needs is not installed; the message names the ``pip install`` to run."""
