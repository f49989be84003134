"""Bounded on-disk spool of value batches, used while the store is slow or down.

A folder of segment files, one per batch, named by a sequence number so replay keeps the order of arrival. A segment
is written to a temporary name, synced and renamed, so a crash leaves either a whole segment or none. Past
``max_bytes`` the oldest segments are dropped and counted (a full disk must not stop the collector); the metrics show
``spool_full`` and the number of dropped values so that an alarm can fire.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from pathlib import Path

log = logging.getLogger(__name__)

_SEG = re.compile(r"^seg-(\d{12})\.json$")

#: A spooled row: measurement, tags as sorted (key, value) pairs, field, time [ns], value or None, StatusCode.
Row = tuple


class DiskSpool:
    """Bounded FIFO of row batches on disk.

    Parameters
    ----------
    folder : path-like
        Spool folder (created with 0700 permissions).
    max_bytes : int
        Upper bound of the spool size [bytes].
    """

    def __init__(self, folder: str | os.PathLike, max_bytes: int = 1 << 30) -> None:
        self.folder = Path(folder).expanduser()
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(self.folder, 0o700)
        except OSError:  # pragma: no cover - folder owned by someone else; writing will tell
            pass
        for tmp in self.folder.glob("*.tmp"):
            tmp.unlink(missing_ok=True)  # half-written segment of a crash: never renamed, never counted
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        segs = self._segments()
        self._seq = (int(_SEG.match(segs[-1].name).group(1)) + 1) if segs else 0
        self._sizes = {p: p.stat().st_size for p in segs}
        self._counts: dict[Path, int] = {}
        self.dropped_values = 0
        self.full = False

    def _segments(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if _SEG.match(p.name))

    @property
    def bytes(self) -> int:
        """Current size [bytes]."""
        return sum(self._sizes.values())

    def __len__(self) -> int:
        """Number of segments."""
        return len(self._sizes)

    def append(self, rows: list[Row]) -> None:
        """Write one batch as a segment; drop the oldest segments when the bound would be exceeded."""
        if not rows:
            return
        data = json.dumps([[r[0], r[1], r[2], r[3], r[4], r[5]] for r in rows], separators=(",", ":")).encode()
        with self._lock:
            self.full = False
            while self._sizes and self.bytes + len(data) > self.max_bytes:
                oldest = min(self._sizes)
                lost = self._count_rows(oldest)
                oldest.unlink(missing_ok=True)
                del self._sizes[oldest]
                self._counts.pop(oldest, None)
                self.dropped_values += lost
                self.full = True
                log.error("spool %s is full (%d bytes): dropped the oldest %d values", self.folder, self.max_bytes, lost)
            if len(data) > self.max_bytes:
                self.dropped_values += len(rows)
                self.full = True
                log.error("spool %s: a batch of %d values is larger than the spool; dropped", self.folder, len(rows))
                return
            path = self.folder / f"seg-{self._seq:012d}.json"
            self._seq += 1
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            self._sizes[path] = len(data)
            self._counts[path] = len(rows)

    def _count_rows(self, path: Path) -> int:
        if path in self._counts:
            return self._counts[path]
        try:
            return len(json.loads(path.read_bytes()))
        except (OSError, ValueError):
            return 0

    def peek(self) -> tuple[Path, list[Row]] | None:
        """Return the oldest segment and its rows, or None when empty; a corrupt segment is set aside."""
        with self._lock:
            while self._sizes:
                path = min(self._sizes)
                try:
                    raw = json.loads(path.read_bytes())
                except (OSError, ValueError) as exc:
                    log.error("spool segment %s is unreadable (%s); moved to %s.bad", path, exc, path.name)
                    os.replace(path, path.with_name(path.name + ".bad"))
                    del self._sizes[path]
                    continue
                rows = [(m, tuple(tuple(kv) for kv in tags), f, int(t), v, int(s)) for m, tags, f, t, v, s in raw]
                return path, rows
            return None

    def remove(self, path: Path) -> None:
        """Delete a segment once its rows are stored."""
        with self._lock:
            path.unlink(missing_ok=True)
            self._sizes.pop(path, None)
            self._counts.pop(path, None)

    def count_values(self) -> int:
        """Number of values waiting in the spool (reads segments not written by this process)."""
        with self._lock:
            return sum(self._count_rows(p) for p in list(self._sizes))
