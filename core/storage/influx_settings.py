"""Settings of the InfluxDB backend: :class:`InfluxSettings`, the ``influx://`` URL form and the env file."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import ConfigError, StoreError

log = logging.getLogger(__name__)


class InfluxSettings(BaseModel):
    """Connection and write settings of :class:`InfluxStore` (a frozen pydantic model, validated on creation).

    Parameters
    ----------
    url : str
        Server URL, e.g. ``http://127.0.0.1:8086``.
    org, bucket : str
        Organisation and bucket of raw points; rollups go to ``<bucket>_1m``, ``_15m``, ``_1h``.
    token_env : str
        Environment variable holding the API token (used when ``token_file`` is not set).
    token_file : Path, optional
        File holding the token (should be readable by its owner only).
    batch_size : int
        Lines per HTTP write.
    flush_interval_ms : int
        Longest time a line waits in the batch buffer [ms].
    jitter_interval_ms, retry_interval_ms, max_retries, max_retry_delay_ms, max_retry_time_ms, exponential_base
        The client's retry policy: exponential backoff plus a random jitter of up to ``jitter_interval_ms``; after it
        gives up the batch goes to the spool. (Batches themselves are sent without jitter, in write order.)
    gzip : bool
        Compress request bodies.
    gzip_level : int
        zlib level of the write bodies (1 = fastest; the client's own default, 9, costs ~4x the CPU for ~15%
        smaller bodies, which matters on a 2-core edge box).
    timeout_ms : int
        HTTP timeout [ms].
    spool_dir : Path, optional
        Store-and-forward folder; default ``~/.cache/wattline/influx-spool/<host-port-bucket>``.
    spool_max_mb : int
        Spool bound [MiB]; the oldest batches are dropped (and logged) beyond it.
    max_backlog_lines : int
        Lines allowed in memory between ``write()`` and the server; beyond it (a bulk load faster than the server,
        or a slow server) new records spill to the spool, so memory stays bounded and ``write()`` still never
        waits.
    auto_refresh_rollups : bool
        Let a background thread recompute, every 30 s when idle, the rollups of hours that received late points
        (``flush()`` always does). Switch off for a bulk import followed by ``refresh_rollups``.
    retention_days, rollup_retention_days : int
        Bucket retention used by :func:`setup_influx` [days]; 0 keeps data forever.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = "http://127.0.0.1:8086"
    org: str = "wattline"
    bucket: str = "wattline"
    token_env: str = "WATTLINE_INFLUX_TOKEN"
    token_file: Path | None = None
    batch_size: int = Field(5000, gt=0)
    flush_interval_ms: int = Field(1000, gt=0)
    jitter_interval_ms: int = Field(200, ge=0)
    retry_interval_ms: int = Field(1000, gt=0)
    max_retries: int = Field(3, ge=0)
    max_retry_delay_ms: int = Field(8000, gt=0)
    max_retry_time_ms: int = Field(15000, ge=0)
    exponential_base: int = Field(2, ge=1)
    gzip: bool = True
    gzip_level: int = Field(1, ge=1, le=9)
    timeout_ms: int = Field(30000, gt=0)
    spool_dir: Path | None = None
    spool_max_mb: int = Field(1024, gt=0)
    max_backlog_lines: int = Field(200_000, gt=0)
    auto_refresh_rollups: bool = True
    retention_days: int = Field(0, ge=0)
    rollup_retention_days: int = Field(0, ge=0)

    @classmethod
    def from_url(cls, url: str) -> InfluxSettings:
        """Parse ``influx://host:port?key=value&...`` (see the module docstring); raise StoreError on bad keys."""
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("influx", "influxs"):
            raise StoreError(f"store URL {url!r}: scheme must be influx:// or influxs://")
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query, keep_blank_values=True).items()}
        env: dict[str, str] = dict(os.environ)
        if "env_file" in query:
            env.update(read_env_file(query.pop("env_file")))
        if "token" in query or parsed.password:
            raise StoreError("do not put the InfluxDB token in the store URL; use token_file=PATH or token_env=VAR")
        valid = {"org", "bucket", "token_file", "token_env", "batch_size", "flush_interval_ms", "gzip", "spool_dir",
                 "timeout_ms"}
        unknown = sorted(set(query) - valid)
        if unknown:
            raise StoreError(f"store URL {url!r}: unknown key(s) {unknown}; valid: {sorted(valid | {'env_file'})}")
        scheme = "https" if parsed.scheme == "influxs" else "http"
        server = f"{scheme}://{parsed.netloc}" if parsed.netloc else env.get("WATTLINE_INFLUX_URL", "")
        if not server:
            raise StoreError(f"store URL {url!r} names no host: use influx://HOST:PORT?... or set WATTLINE_INFLUX_URL")
        values: dict[str, Any] = {"url": server}
        values["org"] = query.get("org") or env.get("WATTLINE_INFLUX_ORG") or "wattline"
        values["bucket"] = query.get("bucket") or env.get("WATTLINE_INFLUX_BUCKET") or "wattline"
        token_file = query.get("token_file") or env.get("WATTLINE_INFLUX_TOKEN_FILE")
        if token_file:
            values["token_file"] = token_file
        for key in ("token_env", "batch_size", "flush_interval_ms", "spool_dir", "timeout_ms"):
            if key in query:
                values[key] = query[key]
        if "gzip" in query:
            values["gzip"] = query["gzip"].lower() in ("1", "true", "yes", "on")
        try:
            return cls(**values)
        except ValidationError as exc:
            raise StoreError(f"store URL {url!r}: {exc}") from exc

    def read_token(self) -> str:
        """Return the API token from ``token_file`` or the ``token_env`` variable (never logged)."""
        if self.token_file is not None:
            path = Path(self.token_file).expanduser()
            try:
                mode = path.stat().st_mode
                token = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"InfluxDB token_file {path}: {exc.strerror}; point token_file at the file "
                                  f"holding the API token") from exc
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                log.warning("InfluxDB token file %s is readable by other users; chmod 600 it", path)
            if not token:
                raise ConfigError(f"InfluxDB token_file {path} is empty")
            return token
        token = os.environ.get(self.token_env, "").strip()
        if not token:
            raise ConfigError(f"no InfluxDB token: set the environment variable {self.token_env} or token_file")
        return token

    def default_spool_dir(self) -> Path:
        """Spool folder used when ``spool_dir`` is not set (one per server and bucket)."""
        digest = hashlib.sha1(f"{self.url}|{self.org}|{self.bucket}".encode()).hexdigest()[:12]
        base = Path(os.environ.get("WATTLINE_CACHE", Path.home() / ".cache" / "wattline"))
        return base / "influx-spool" / digest


def read_env_file(path: str | os.PathLike) -> dict[str, str]:
    """Read ``KEY=VALUE`` lines (the env file written by ``deploy/influxdb/start.sh``)."""
    out = {}
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"cannot read InfluxDB env file {path}: {exc.strerror}; run deploy/influxdb/start.sh") from exc
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def _coerce_settings(config: Any) -> InfluxSettings:
    if isinstance(config, InfluxSettings):
        return config
    if isinstance(config, str):
        return InfluxSettings.from_url(config)
    try:
        if isinstance(config, Mapping):
            return InfluxSettings(**config)
        inner = getattr(config, "influx", None)  # a whole app config with an ``influx`` section
        if inner is not None and inner is not config:
            return _coerce_settings(inner)
        if hasattr(config, "model_dump"):
            return InfluxSettings(**config.model_dump())
    except ValidationError as exc:
        raise ConfigError(f"InfluxDB settings: {exc}") from exc
    raise ConfigError(f"cannot read InfluxDB settings from {type(config).__name__}; give a URL or an influx section")
