"""Fails loudly when an influxdb-client upgrade changes an internal that ``core/storage/compat_influxdb.py`` relies on.

When one fails after an upgrade: read the new client code for that internal, adapt ``compat_influxdb.py`` (only
there), run the InfluxDB storage tests against the real server, then set ``TESTED_VERSION`` and the pins in
``pyproject.toml`` and ``constraints.txt`` to the new version. No server is needed here: these check the client's code.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import inspect
from pathlib import Path

from influxdb_client import InfluxDBClient
from influxdb_client.client.write.retry import WritesRetry
from influxdb_client.client.write_api import WriteApi

from core.storage import compat_influxdb as compat

REPO = Path(__file__).resolve().parents[2]


def test_installed_influxdb_client_is_the_tested_and_pinned_version():
    installed = importlib.metadata.version("influxdb-client")
    assert installed == compat.TESTED_VERSION, (
        f"influxdb-client {installed} is installed but compat_influxdb.py was checked against {compat.TESTED_VERSION}; "
        "run this file's tests and the InfluxDB storage tests, then update TESTED_VERSION and the pins"
    )
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert f'"influxdb-client=={compat.TESTED_VERSION}"' in pyproject
    constraints = (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines()
    assert f"influxdb-client=={compat.TESTED_VERSION}" in constraints


def test_retry_jitter_reaches_every_retry_attempt_and_batches_get_no_delay():
    options = compat.write_options(retry_jitter_s=0.25, jitter_interval=0, retry_interval=500, max_retries=3)
    assert options.jitter_interval == 0 and options.retry_interval == 500
    retry = options.to_retry_strategy(retry_callback=lambda exc: None)
    assert isinstance(retry, WritesRetry) and retry.jitter_interval == 0.25
    assert retry.new(total=2).jitter_interval == 0.25, "WritesRetry.new no longer carries jitter_interval"
    # The write API asks the options for its retry strategy with a retry_callback, and derives the random delay
    # before each batch from jitter_interval (which is why the batches' jitter is 0 and the retries' is ours).
    source = inspect.getsource(WriteApi)
    assert "self._write_options.to_retry_strategy(retry_callback=" in source
    assert "random() * self._write_options.jitter_interval" in inspect.getsource(WriteApi._jitter_delay)


def test_gzip_level_applies_to_write_bodies_only():
    with InfluxDBClient(url="http://127.0.0.1:9", token="unused", org="o", enable_gzip=True) as client:
        conf = client.api_client.configuration
        body = b"m,site=a f=1 1\n" * 2000
        assert gzip.decompress(conf.update_request_body("/api/v2/write", body)) == body  # the client's own, level 9
        level9 = len(conf.update_request_body("/api/v2/write", body))
        compat.set_gzip_level(client, 1)
        fast = conf.update_request_body("/api/v2/write", body)
        assert gzip.decompress(fast) == body and len(fast) != level9
        assert gzip.decompress(conf.update_request_body("/api/v2/write", body.decode())) == body
        assert conf.update_request_body("/api/v2/query", b"{}") == b"{}"
    # The REST layer passes every request body through the configuration's update_request_body.
    from influxdb_client._sync import api_client

    assert "config.update_request_body(resource_path, body)" in inspect.getsource(api_client.ApiClient)
