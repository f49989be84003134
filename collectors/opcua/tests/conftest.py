"""Fixtures: a real asyncua plant server on a free localhost port and collector configs pointing at it."""

from __future__ import annotations

import pytest

from collectors.opcua.config import parse_collector_config


def fast_config(endpoint: str, tmp_path, groups: list[dict], **server_extra) -> CollectorConfig:  # noqa: F821
    """A collector config with short intervals, a spool and metrics on a free port, for tests."""
    for g in groups:
        g.setdefault("sampling_interval_ms", 50)
        g.setdefault("publishing_interval_ms", 100)
    server = {"name": "plant", "endpoint": endpoint, "groups": groups,
              "timeouts": {"keepalive_s": 0.5, "reconnect_min_s": 0.2, "reconnect_max_s": 2.0, "request_s": 4}}
    server.update(server_extra)
    return parse_collector_config(
        {
            "store": str(tmp_path / "w.db"),
            "servers": [server],
            "buffer": {"flush_interval_s": 0.1, "retry_interval_s": 0.2},
            "spool": {"path": str(tmp_path / "spool")},
            "metrics": {"listen": "127.0.0.1:0"},
            "status_file": str(tmp_path / "status.json"),
        }
    )


@pytest.fixture
def anyio_backend():
    return "asyncio"
