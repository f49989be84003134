"""Base exceptions shared by every Wattline package.

Each package derives its own base exception from :class:`WattlineError`, so that the command line can turn any of
them into one clear line and an exit code instead of a traceback.
"""

from __future__ import annotations


class WattlineError(Exception):
    """Base of every error Wattline raises on purpose.

    Attributes
    ----------
    exit_code : int
        Process exit code the command line uses: 2 for usage and configuration errors, 1 for runtime errors.
    """

    exit_code = 1


class ConfigError(WattlineError):
    """A configuration file, option or value is invalid; the message names the file, key and valid options."""

    exit_code = 2


class StoreError(WattlineError):
    """The store cannot be opened, written or queried."""


class StoreUnavailable(StoreError):
    """The store is unreachable for now; the caller may retry or spool."""
