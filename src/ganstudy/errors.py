"""The errors a user can cause, at the bottom of the import graph.

Every module raises these for bad input (a key, file or value that is not allowed) and the CLI
prints them as one line, without a traceback. They import nothing, so any module can raise them
without importing the module that defines a registry.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or not allowed."""

    # How the command line introduces the message.
    label = "configuration error"


def require(condition: bool, key: str, value, allowed: str) -> None:
    """The refusal of a config value that is not allowed: a :class:`ConfigError` naming the key,
    the value and what is allowed, unless ``condition`` holds."""
    if not condition:
        raise ConfigError(f"key '{key}': {value!r} is not allowed; allowed: {allowed}")


class FetchError(ConfigError):
    """A raw file could not be obtained or failed verification."""


class FIDError(ConfigError):
    """FID cannot be computed as asked (settings, weights or inputs)."""


class SlotError(ConfigError):
    """A GPU slot setting is not allowed, or no slot can be claimed."""


class StorageError(ConfigError):
    """A file cannot be written: no space left, no permission, a read-only filesystem."""

    label = "storage error"


class CheckpointError(ConfigError):
    """A checkpoint cannot be read, or fails the checksum recorded when it was written."""

    label = "checkpoint error"

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = path
