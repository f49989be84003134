"""Settings of the top-level commands (``wattline demo``, ``wattline series``), read from ``--config FILE``.

Command-line options override the file; the file overrides these defaults. See ``wattline.sample.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from analytics.parallel import ParallelSettings
from core.config import FrozenModel, deep_merge, parse_config, read_yaml
from dashboard.api_limits import ApiLimits

DEFAULT_STORE = "wattline.db"


class DemoSettings(FrozenModel):
    """The live demo plant."""

    machines: int = Field(8, ge=1, le=500, description="Number of simulated machines.")
    duration: float | None = Field(None, gt=0, description="Stop by itself after this many seconds [s].")
    speed: float = Field(1.0, gt=0, le=3600, description="Simulated seconds per real second.")
    opcua_host: str = "127.0.0.1"
    opcua_port: int = Field(4840, ge=0, le=65535, description="Port of the simulated plant's OPC UA server; 0 picks a free one.")
    seed: int = 0
    history_days: int = Field(21, ge=0, le=366, description="Days of history backfilled and analysed before the live stream (0: none).")


class DashboardSettings(FrozenModel):
    """The web dashboard."""

    host: str = "127.0.0.1"
    port: int = Field(8050, ge=1, le=65535)
    refresh_s: float = Field(2.0, gt=0, description="Live page refresh interval [s].")
    api_limits: ApiLimits = Field(ApiLimits(), description="Limits of /api/v1: query sizes, requests per token per "
                                  "minute (dashboard.api_limits.ApiLimits).")


class AppSettings(FrozenModel):
    """Top-level settings file."""

    store: str = Field(DEFAULT_STORE, description="Store URL: a file path, sqlite:///path or influx://host:port?...")
    demo: DemoSettings = DemoSettings()
    dashboard: DashboardSettings = DashboardSettings()
    analytics: ParallelSettings = ParallelSettings()


def read_app_settings(path: Path | None, overrides: dict | None = None) -> AppSettings:
    """Read settings from an optional YAML file, then apply command-line overrides (None means 'not given')."""
    data: Any = {}  # the YAML's top level: checked to be a mapping below
    lines: dict[tuple, int] = {}
    source = "<command line>"
    if path is not None:
        data, lines = read_yaml(path)
        source = str(path)
        if not isinstance(data, dict):
            from core.errors import ConfigError

            raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    data = deep_merge(data, _drop_none(overrides or {}))
    return parse_config(AppSettings, data, source, lines)


def _drop_none(values: dict) -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            value = _drop_none(value)
            if not value:
                continue
        if value is not None:
            out[key] = value
    return out
