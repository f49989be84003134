"""Every use of influxdb-client's internals, in one place (tested with influxdb-client :data:`TESTED_VERSION`).

``tests/storage/test_compat_influxdb.py`` fails naming the internal that changed when an upgrade breaks one of these:

- :func:`write_options`: ``WriteOptions`` whose *retries* get jitter while batches leave without the random delay
  the client puts before every batch when ``jitter_interval`` is set (overrides ``to_retry_strategy`` and sets the
  ``WritesRetry.jitter_interval`` attribute, which ``WritesRetry.new`` carries to every later attempt).
- :func:`set_gzip_level`: gzip write bodies at a chosen level (the client's ``Configuration.update_request_body``
  hard-codes ``gzip.compress``'s default, level 9, which costs more CPU than it saves on line protocol).
"""

from __future__ import annotations

from typing import Any

#: The influxdb-client release these internals were checked against (pinned in pyproject.toml and constraints.txt).
TESTED_VERSION = "1.50.0"

_OPTIONS_CLASS: Any = None


def write_options(retry_jitter_s: float = 0.0, **kwargs: Any):
    """``influxdb_client.WriteOptions(**kwargs)`` whose retry backoffs get up to ``retry_jitter_s`` of jitter [s].

    Pass ``jitter_interval=0`` with it: the client applies ``jitter_interval`` both as a random delay before each batch
    (which can reorder batches, and a later write of the same timestamp must win) and to retry backoffs.
    """
    global _OPTIONS_CLASS
    if _OPTIONS_CLASS is None:
        from influxdb_client.client.write_api import WriteOptions

        class RetryJitterWriteOptions(WriteOptions):
            """WriteOptions whose retries get jitter while batches are sent without a random delay."""

            def __init__(self, retry_jitter_s: float = 0.0, **kw: Any) -> None:
                super().__init__(**kw)
                self.retry_jitter_s = retry_jitter_s

            def to_retry_strategy(self, **kw: Any):
                retry = super().to_retry_strategy(**kw)
                retry.jitter_interval = self.retry_jitter_s  # WritesRetry.new() carries it to every later attempt
                return retry

        _OPTIONS_CLASS = RetryJitterWriteOptions
    return _OPTIONS_CLASS(retry_jitter_s=retry_jitter_s, **kwargs)


def set_gzip_level(client: Any, level: int) -> None:
    """Make ``client`` (an ``InfluxDBClient`` made with ``enable_gzip=True``) gzip write bodies at ``level`` (1-9)."""
    import gzip

    conf = client.api_client.configuration
    original = conf.update_request_body

    def update_request_body(path, body):
        if path == "/api/v2/write":
            data = body if isinstance(body, bytes) else str(body).encode("utf-8")
            return gzip.compress(data, compresslevel=level)
        return original(path, body)

    conf.update_request_body = update_request_body
