"""Deployment files: the commented sample ``deploy/wattline.yaml`` validates, names every key and only real commands."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from core.config import read_yaml
from wattline.serve_config import ServeConfig, check_wattline_args, read_serve_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every key path of a settings model (nested models and lists of models included)."""
    out = set()
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        out.add(path)
        for arg in (info.annotation, *getattr(info.annotation, "__args__", ())):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                out |= _keys(arg, path + ".")
    return out


def _present(data, prefix: str = "") -> set[str]:
    out = set()
    if isinstance(data, dict):
        for key, value in data.items():
            out.add(f"{prefix}{key}")
            out |= _present(value, f"{prefix}{key}.")
    elif isinstance(data, list):
        for item in data:
            out |= _present(item, prefix)
    return out


def test_sample_serve_config_validates_and_covers_every_key():
    path = DEPLOY / "wattline.yaml"
    cfg = read_serve_config(path, check_files=False)
    data, _ = read_yaml(path)
    missing = _keys(ServeConfig) - _present(data)
    assert not missing, f"deploy/wattline.yaml does not show these keys: {sorted(missing)}"
    assert cfg.collectors and cfg.dashboard.enabled and cfg.analytics.enabled
    from wattline.cli_serve import build_services

    for svc in build_services(cfg):
        assert check_wattline_args(svc.args) is None, svc.args
