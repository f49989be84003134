"""Exceptions of the analytics package."""

from core.errors import WattlineError


class AnalyticsError(WattlineError):
    """Base of every error raised by the analytics."""


class InsufficientDataError(AnalyticsError):
    """There is not enough data to fit a model; the message says how much there is and how much is needed."""
