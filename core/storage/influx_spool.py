"""Store-and-forward spool and quarantine for :mod:`core.storage.influx`.

The spool is a folder of segment files, one per failed write batch, named by a sequence number so that replay keeps
the order in which batches were written. Each segment holds newline-separated line protocol (never a token). The spool
is bounded: past ``max_bytes`` the oldest segments are dropped, each with an error log naming how many lines were lost
(a full disk must not take the collector down). Non-retryable rejections go to ``quarantine.lp`` with the server's
message, and are never retried automatically.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

_SEG = re.compile(r"^seg-(\d{12})\.lp$")


class Spool:
    """Bounded on-disk FIFO of line-protocol batches.

    Parameters
    ----------
    folder : Path
        Spool folder (created with 0700 permissions).
    max_bytes : int
        Upper bound of the spool size [bytes].
    """

    def __init__(self, folder: str | os.PathLike, max_bytes: int = 1 << 30) -> None:
        self.folder = Path(folder).expanduser()
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(self.folder, 0o700)
        except OSError:  # pragma: no cover - a folder owned by someone else; writing will tell
            pass
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        segs = self._segments()
        self._seq = (int(_SEG.match(segs[-1].name).group(1)) + 1) if segs else 0
        self._bytes = sum(p.stat().st_size for p in segs)
        self._count = len(segs)
        self.dropped_lines = 0

    def _segments(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if _SEG.match(p.name))

    def __len__(self) -> int:
        return self._count  # kept in memory: write() checks it on every call

    @property
    def bytes(self) -> int:
        """Current spool size [bytes]."""
        return self._bytes

    def append(self, data: bytes) -> None:
        """Append one batch; drop the oldest segments when the spool would exceed ``max_bytes``."""
        if not data:
            return
        with self._lock:
            while self._bytes + len(data) > self.max_bytes:
                segs = self._segments()
                if not segs:
                    break
                oldest = segs[0]
                lost = oldest.read_bytes().count(b"\n") + 1
                self._bytes -= oldest.stat().st_size
                oldest.unlink()
                self._count -= 1
                self.dropped_lines += lost
                log.error("InfluxDB spool %s is full (%d bytes): dropped the oldest %d lines", self.folder,
                          self.max_bytes, lost)
            path = self.folder / f"seg-{self._seq:012d}.lp"
            self._seq += 1
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)  # atomic: a crash never leaves half a segment to replay
            self._bytes += len(data)
            self._count += 1

    def oldest(self) -> tuple[Path, bytes] | None:
        """Return the oldest segment and its content, or None when empty."""
        with self._lock:
            segs = self._segments()
            if not segs:
                return None
            return segs[0], segs[0].read_bytes()

    def oldest_batch(self, max_lines: int, max_bytes: int = 8 << 20) -> list[tuple[Path, bytes]]:
        """Return the oldest segments, in order, together up to ``max_lines`` lines (at least one segment)."""
        out: list[tuple[Path, bytes]] = []
        lines = size = 0
        with self._lock:
            for path in self._segments():
                data = path.read_bytes()
                n = data.count(b"\n") + 1
                if out and (lines + n > max_lines or size + len(data) > max_bytes):
                    break
                out.append((path, data))
                lines += n
                size += len(data)
        return out

    def remove(self, path: Path) -> None:
        """Remove a segment after it was delivered (or quarantined)."""
        with self._lock:
            try:
                size = path.stat().st_size
                path.unlink()
                self._bytes -= size
                self._count -= 1
            except FileNotFoundError:
                pass


class Quarantine:
    """Append-only file of rejected batches with the server's reason, for a person to inspect and fix."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.count = 0

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
