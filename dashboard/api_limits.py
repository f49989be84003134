"""Limits of the ``/api/v1`` routes (:class:`ApiLimits`): how much one query may read and how many requests a token
may send per minute. Settable in ``wattline serve``'s ``dashboard.api_limits``, the settings file's
``dashboard.api_limits`` and ``wattline dashboard --api-limit KEY=VALUE`` (docs/api.md, "Limits")."""

from __future__ import annotations

from pydantic import Field

from core.config import FrozenModel, parse_config
from core.errors import ConfigError


class ApiLimits(FrozenModel):
    """How much one query may read (larger ones are refused with a 400 naming the parameter to narrow) and how often
    a token may ask (more is a 429 with ``Retry-After``).

    Parameters
    ----------
    max_raw_series_days : float
        Series x days of range for the aggregations computed from raw points (increase, twmean, integral,
        state_seconds): 10,000 is 27 machines for a year or 330 for a month.
    max_series_days : float
        Series x days for the windowed aggregations answered from the rollups (mean, sum, min, max, last, count).
    max_rows : int
        Rows of the answer (windows x series), which sets its size.
    requests_per_minute : int or None
        Requests per token within any 60 s, over every ``/api/v1`` route and every worker together; None: no limit.
    """

    max_raw_series_days: float = Field(10_000.0, gt=0, description="Series x days a raw-point aggregation (increase, "
                                       "twmean, integral, state_seconds) may read.")
    max_series_days: float = Field(200_000.0, gt=0, description="Series x days a rollup aggregation (mean, sum, min, "
                                   "max, last, count) may read.")
    max_rows: int = Field(1_000_000, ge=1, description="Rows (windows x series) of one answer.")
    requests_per_minute: int | None = Field(600, ge=1, description="Requests per token within any 60 s, all /api/v1 "
                                            "routes and workers together (429 beyond); null: no limit.")

    def options(self) -> list[str]:
        """The ``wattline dashboard --api-limit KEY=VALUE`` options giving the values that differ from the defaults."""
        default = ApiLimits()
        return [opt for key in type(self).model_fields if getattr(self, key) != getattr(default, key)
                for opt in ("--api-limit", f"{key}={'null' if getattr(self, key) is None else getattr(self, key)}")]


def parse_api_limit_options(values: list[str] | tuple[str, ...], base: ApiLimits | None = None) -> ApiLimits:
    """``KEY=VALUE`` pairs of ``--api-limit`` over ``base`` (default the defaults), validated.

    Raises
    ------
    ConfigError
        Naming the option, the key and the valid keys or values.
    """
    data = (base or ApiLimits()).model_dump()
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--api-limit {value!r}: give KEY=VALUE, keys: {', '.join(ApiLimits.model_fields)}")
        text = text.strip()
        data[key.strip()] = None if text.lower() in ("null", "none", "") else text
    return parse_config(ApiLimits, data, "--api-limit")
