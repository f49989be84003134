"""Store-and-forward spool and quarantine for :mod:`core.storage.influx`.

The spool is :class:`core.spool.SegmentSpool` (the one spool implementation, shared with the collector) with one
segment of newline-separated line protocol (never a token) per failed write batch; past ``max_bytes`` the oldest
segments are dropped and counted (``dropped_lines``, ``on_drop``). Non-retryable rejections go to ``quarantine.lp``
with the server's message, and are never retried automatically.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path

from core.spool import SegmentSpool

log = logging.getLogger(__name__)


class Spool(SegmentSpool):
    """Bounded on-disk FIFO of line-protocol batches (:class:`core.spool.SegmentSpool` with ``.lp`` segments).

    Parameters
    ----------
    folder : Path
        Spool folder (created with 0700 permissions).
    max_bytes : int
        Upper bound of the spool size [bytes].
    """

    def __init__(self, folder: str | os.PathLike, max_bytes: int = 1 << 30) -> None:
        super().__init__(folder, max_bytes, suffix=".lp", what="lines")

    def count_items(self, data: bytes) -> int:
        return data.count(b"\n") + 1 if data else 0

    @property
    def dropped_lines(self) -> int:
        """Lines dropped because the spool was full."""
        return self.dropped

    def append(self, data: bytes) -> None:
        """Append one batch; drop the oldest segments when the spool would exceed ``max_bytes``."""
        self.append_bytes(data)


class Quarantine:
    """Append-only file of rejected batches with the server's reason, for a person to inspect and fix."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.count = 0  # batches
        self.lines = 0

    def add(self, data: bytes, reason: str) -> None:
        """Record a rejected batch; log the offending line when the server names it."""
        line_no = None
        match = re.search(r"line (\d+)", reason)
        lines = data.decode("utf-8", errors="replace").split("\n")
        if match and 0 < int(match.group(1)) <= len(lines):
            line_no = int(match.group(1))
        offending = lines[line_no - 1] if line_no else lines[0]
        log.error(
            "InfluxDB rejected a batch of %d lines (not retried, quarantined in %s): %s; offending line: %s",
            len(lines), self.path, reason.strip()[:500], offending[:500],
        )
        with self._lock:
            with open(self.path, "ab") as fh:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                fh.write(f"# {stamp} rejected: {reason.strip()[:2000]}\n".encode())
                fh.write(data.rstrip(b"\n") + b"\n")
            self.count += 1
            self.lines += len(lines)
