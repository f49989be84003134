"""Warnings as data.

A :class:`Notice` is a warning that the program recovered from and that a person may want to see: a dotted name that
says what kind of thing happened (``collector.node.bad_status``), a one-line message and JSON-able details. The
dashboard lists them; logs print them.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Notice:
    """One recoverable problem, as data.

    Parameters
    ----------
    name : str
        Dotted identifier of the kind of problem, e.g. ``"analytics.baseline.insufficient_data"``.
    message : str
        One sentence for a person, saying what happened and what to do.
    details : dict
        JSON-serialisable facts (machine, node id, counts, ...).
    level : str
        ``"info"``, ``"warning"`` or ``"error"``.
    time_s : float
        When it was raised [s since the Unix epoch].
    """

    name: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    level: str = "warning"
    time_s: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """Return the notice as a JSON-serialisable dict."""
        return asdict(self)

    def to_json(self) -> str:
        """Return the notice as one JSON line."""
        return json.dumps(self.to_dict(), default=str, ensure_ascii=False)
