"""The errors a user can cause, at the bottom of the import graph.

Every module raises these for bad input (a key, file or value that is not allowed) and the CLI
prints them as one line, without a traceback. They import nothing, so any module can raise them
without importing the module that defines a registry.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or not allowed."""


class FetchError(ConfigError):
    """A raw file could not be obtained or failed verification."""


class FIDError(ConfigError):
    """FID cannot be computed as asked (settings, weights or inputs)."""


class SlotError(ConfigError):
    """A GPU slot setting is not allowed, or no slot can be claimed."""
