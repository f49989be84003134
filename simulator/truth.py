"""The ground-truth manifest: writing, reading and checking it (schema in docs/simulator.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from core.model import EVENT_KINDS, Event
from simulator.errors import SimulatorError

REQUIRED_KEYS = ("plant_energy_kwh", "avoidable_kwh", "avoidable_fraction", "by_cause", "events")


def write_manifest(manifest: dict, path: str | os.PathLike) -> Path:
    """Write a manifest as JSON atomically (write to a temporary file, then rename)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise SimulatorError(f"cannot write the ground-truth manifest {path}: {exc}") from None
    return path


def read_manifest(path: str | os.PathLike) -> dict:
    """Read and check a manifest; events are returned as :class:`core.model.Event` under ``"events"``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SimulatorError(f"cannot read the ground-truth manifest {path}: {exc}") from None
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise SimulatorError(f"{path}: not a ground-truth manifest, missing keys {missing}")
    events = []
    for i, item in enumerate(data["events"]):
        try:
            events.append(Event.from_dict(item))
        except (KeyError, ValueError) as exc:
            raise SimulatorError(f"{path}: events[{i}]: {exc}; valid kinds: {', '.join(EVENT_KINDS)}") from None
    return {**data, "events": events}
