"""Configurable limits of ``/api/v1`` (dashboard.api_limits.ApiLimits) and the per-token request limit: 429 with
Retry-After beyond it, other tokens unaffected, counted across workers through the shared file, and a limit set in
the serve config or the settings file reaching the dashboard's command line and taking effect."""

from __future__ import annotations

import json
import os

import pytest

from core.errors import ConfigError
from core.orders.api import hash_token
from dashboard.api_limits import ApiLimits, parse_api_limit_options

TOKENS = {"bi": ("tok-bi-" + "b" * 26, "engineer"), "grafana": ("tok-gr-" + "g" * 26, "engineer")}


@pytest.fixture
def tokens_file(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": [{"name": n, "sha256": hash_token(t), "role": r, "sites": ["north"]}
                                           for n, (t, r) in TOKENS.items()]}))
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def store_url(tmp_path):
    from core.storage.sqlite import SQLiteStore

    with SQLiteStore(tmp_path / "plant.db"):
        pass
    return str(tmp_path / "plant.db")


def _app(store_url, users_path, tokens_file, limits, cache_dir=None):
    from dashboard.app import create_app

    return create_app(store_url, users=users_path, api_tokens=tokens_file, api_limits=limits, cache_dir=cache_dir)


def _get(app, token: str, path: str = "/api/v1/series"):
    return app.server.test_client().get(path, headers={"Authorization": f"Bearer {TOKENS[token][0]}"})


def test_over_limit_token_gets_429_and_another_token_does_not(store_url, users_path, tokens_file):
    from dashboard.app import close_store

    app = _app(store_url, users_path, tokens_file, ApiLimits(requests_per_minute=3))
    try:
        assert [_get(app, "bi").status_code for _ in range(3)] == [200, 200, 200]
        refused = _get(app, "bi", "/api/v1/openapi.json")  # every /api/v1 route counts
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
        assert "bi sent more than 3 requests" in refused.json["error"] and "requests_per_minute" in refused.json["error"]
        assert _get(app, "grafana").status_code == 200  # another token has its own count
        assert app.server.test_client().get("/api/v1/series").status_code == 401  # no token: not counted, refused
    finally:
        close_store(app)


def test_the_count_is_shared_by_workers(store_url, users_path, tokens_file, tmp_path):
    """Two apps with one cache folder are two gunicorn workers: requests on one count on the other."""
    from dashboard.app import close_store

    cache = tmp_path / "users.json.cache"
    one, two = (_app(store_url, users_path, tokens_file, ApiLimits(requests_per_minute=4), cache) for _ in range(2))
    try:
        assert [_get(app, "bi").status_code for app in (one, two, one, two)] == [200] * 4
        assert _get(one, "bi").status_code == 429 and _get(two, "bi").status_code == 429
        assert (cache / "api-requests.sqlite").exists()
    finally:
        close_store(one)
        close_store(two)


def test_no_rate_limit_when_null(store_url, users_path, tokens_file):
    from dashboard.app import close_store

    app = _app(store_url, users_path, tokens_file, parse_api_limit_options(["requests_per_minute=null"]))
    try:
        assert {_get(app, "bi").status_code for _ in range(20)} == {200}
    finally:
        close_store(app)


def test_limits_in_the_serve_config_take_effect(tmp_path, store_url, users_path, tokens_file):
    """``dashboard.api_limits`` of ``wattline serve`` becomes the dashboard's --api-limit options, which the
    dashboard command reads into the limits the app enforces."""
    from dashboard.app import close_store
    from wattline.cli_serve import build_services
    from wattline.serve_config import check_wattline_args, read_serve_config

    config = tmp_path / "serve.yaml"
    config.write_text(f"store: {store_url}\nanalytics: {{enabled: false}}\n"
                      f"dashboard:\n  users: {users_path}\n  api_tokens: {tokens_file}\n"
                      "  api_limits: {requests_per_minute: 2, max_rows: 5000}\n")
    args = next(s for s in build_services(read_serve_config(config)) if s.name == "dashboard").args
    assert check_wattline_args(args) is None, args
    given = [args[i + 1] for i, a in enumerate(args) if a == "--api-limit"]
    assert sorted(given) == ["max_rows=5000", "requests_per_minute=2"]  # only what differs from the defaults
    limits = parse_api_limit_options(given)
    assert limits.max_rows == 5000 and limits.max_series_days == ApiLimits().max_series_days
    app = _app(store_url, users_path, tokens_file, limits)
    try:
        assert [_get(app, "bi").status_code for _ in range(3)] == [200, 200, 429]
    finally:
        close_store(app)


def test_limits_from_the_settings_file_and_options(tmp_path):
    from wattline.settings import read_app_settings

    settings = tmp_path / "wattline.yaml"
    settings.write_text("dashboard:\n  api_limits:\n    requests_per_minute: 30\n    max_rows: 1000\n")
    from_file = read_app_settings(settings).dashboard.api_limits
    assert from_file == ApiLimits(requests_per_minute=30, max_rows=1000)
    assert parse_api_limit_options(["max_rows=10"], from_file) == ApiLimits(requests_per_minute=30, max_rows=10)


@pytest.mark.parametrize("options, words", [
    (["max_rowz=10"], ["max_rowz", "valid keys", "max_rows", "requests_per_minute"]),
    (["requests_per_minute=0"], ["requests_per_minute", "greater than or equal to 1"]),
    (["max_rows=lots"], ["max_rows", "integer"]),
    (["requests_per_minute"], ["KEY=VALUE", "requests_per_minute"]),
])
def test_bad_limits_name_the_key(options, words):
    with pytest.raises(ConfigError) as err:
        parse_api_limit_options(options)
    for word in words:
        assert word in str(err.value), str(err.value)


def test_bad_limit_in_the_serve_config_names_file_line_and_key(tmp_path):
    from wattline.serve_config import read_serve_config

    config = tmp_path / "serve.yaml"
    config.write_text("analytics: {enabled: false}\ndashboard:\n  enabled: false\n  api_limits:\n"
                      "    requests_per_minute: -5\n")
    with pytest.raises(ConfigError, match=r"serve.yaml:5: dashboard.api_limits.requests_per_minute"):
        read_serve_config(config)


@pytest.mark.integration  # the wattline CLI in a child process
def test_dashboard_command_refuses_a_bad_limit(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "wattline", "dashboard", "--store", str(tmp_path / "none.db"),
                           "--api-limit", "requests_per_minute=-1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("wattline: error: --api-limit"), done.stderr
    assert "requests_per_minute" in done.stderr and "Traceback" not in done.stderr
