"""Bounded on-disk spool: the one store-and-forward queue of Wattline.

Used while a store is slow or down, by the collector's batch writer (rows, :class:`RowSpool`) and by the InfluxDB
store (line protocol, ``core.storage.influx_spool.Spool``). A spool is a folder of segment files, one per batch, named
by a sequence number so that replay keeps the order of arrival. A segment is written to a temporary name, synced and
renamed, so a crash leaves either a whole segment or none (a leftover ``*.tmp`` is removed at the next start).

The spool is bounded: past ``max_bytes`` the oldest segments are dropped (a full disk must not stop a collector).
Every drop is counted (``dropped``), sets ``full`` and calls ``on_drop(n_items, reason)``, so that the owner raises a
notice and a metric, not only a log line.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

#: A spooled row: measurement, tags as sorted (key, value) pairs, field, time [ns], value or None, StatusCode.
Row = tuple


class SegmentSpool:
    """Bounded FIFO of byte segments on disk.

    Parameters
    ----------
    folder : path-like
        Spool folder (created with 0700 permissions).
    max_bytes : int
        Upper bound of the spool size [bytes].
    suffix : str
        File name suffix of segments (``.json``, ``.lp``); segments are ``seg-<12 digits><suffix>``.
    what : str
        What one item is (``values``, ``lines``), for messages.

    Attributes
    ----------
    dropped : int
        Items dropped because the spool was full (since this object was made).
    full : bool
        True after the latest append had to drop data.
    on_drop : callable or None
        Called as ``on_drop(n_items, reason)`` after data was dropped (outside the spool's lock).
    """

    def __init__(self, folder: str | os.PathLike, max_bytes: int = 1 << 30, *, suffix: str = ".seg",
                 what: str = "items") -> None:
        self.folder = Path(folder).expanduser()
        self.folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # a folder owned by someone else: writing will tell
            os.chmod(self.folder, 0o700)
        for tmp in self.folder.glob("*.tmp"):
            tmp.unlink(missing_ok=True)  # half-written segment of a crash: never renamed, never counted
        self.max_bytes = int(max_bytes)
        self.suffix = suffix
        self.what = what
        self._pattern = re.compile(r"^seg-(\d{12})" + re.escape(suffix) + "$")
        self._lock = threading.Lock()
        segs = sorted(p for p in self.folder.iterdir() if self._pattern.match(p.name))
        last = self._pattern.match(segs[-1].name) if segs else None  # (segs are the names that match)
        self._seq = int(last.group(1)) + 1 if last else 0
        # Insertion order is sequence order: the first key is the oldest segment.
        self._sizes: dict[Path, int] = {p: p.stat().st_size for p in segs}
        self._bytes = sum(self._sizes.values())
        self._counts: dict[Path, int] = {}
        self.dropped = 0
        self.full = False
        self.on_drop: Callable[[int, str], None] | None = None

    # -- what a subclass defines ---------------------------------------------------------------------------------------
    def count_items(self, data: bytes) -> int:
        """Number of items in one segment's bytes (a subclass knows its format)."""
        return 1 if data else 0

    # -- size ----------------------------------------------------------------------------------------------------------
    @property
    def bytes(self) -> int:
        """Current size [bytes]."""
        return self._bytes

    def __len__(self) -> int:
        """Number of segments."""
        return len(self._sizes)

    def count_values(self) -> int:
        """Items waiting in the spool (reads segments written before this process started)."""
        with self._lock:
            return sum(self._count(p) for p in list(self._sizes))

    def _count(self, path: Path) -> int:
        n = self._counts.get(path)
        if n is None:
            try:
                n = self.count_items(path.read_bytes())
            except (OSError, ValueError, TypeError):
                n = 0
            self._counts[path] = n
        return n

    # -- writing -------------------------------------------------------------------------------------------------------
    def append_bytes(self, data: builtins.bytes, n_items: int | None = None) -> None:
        """Write one segment; drop the oldest segments when the bound would be exceeded.

        Raises
        ------
        OSError
            When the segment cannot be written (the caller still holds the data).
        """
        if not data:
            return
        n_items = self.count_items(data) if n_items is None else int(n_items)
        lost = 0
        reason = ""
        with self._lock:
            self.full = False
            while self._sizes and self._bytes + len(data) > self.max_bytes:
                oldest = next(iter(self._sizes))
                n = self._count(oldest)
                self._forget(oldest)
                oldest.unlink(missing_ok=True)
                lost += n
                reason = f"spool {self.folder} is full ({self.max_bytes} bytes): dropped the oldest {lost} {self.what}"
            if len(data) > self.max_bytes:
                lost += n_items
                reason = (f"spool {self.folder}: a batch of {n_items} {self.what} is larger than the whole spool "
                          f"({self.max_bytes} bytes); dropped")
            else:
                path = self.folder / f"seg-{self._seq:012d}{self.suffix}"
                self._seq += 1
                tmp = path.with_name(path.name + ".tmp")
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)  # atomic: a crash never leaves half a segment to replay
                self._sizes[path] = len(data)
                self._bytes += len(data)
                self._counts[path] = n_items
            if lost:
                self.dropped += lost
                self.full = True
        if lost:
            log.error("%s", reason)
            if self.on_drop is not None:
                try:
                    self.on_drop(lost, reason)
                except Exception:
                    log.exception("spool on_drop callback failed")

    def _forget(self, path: Path) -> None:
        # Called with the lock held.
        size = self._sizes.pop(path, None)
        if size is not None:
            self._bytes -= size
        self._counts.pop(path, None)

    # -- reading -------------------------------------------------------------------------------------------------------
    def oldest(self) -> tuple[Path, builtins.bytes] | None:
        """The oldest segment and its content, or None when empty."""
        batch = self.oldest_batch(1)
        return batch[0] if batch else None

    def oldest_batch(self, max_items: int, max_bytes: int = 8 << 20) -> list[tuple[Path, builtins.bytes]]:
        """The oldest segments, in order, together up to ``max_items`` items and ``max_bytes`` (at least one)."""
        out: list[tuple[Path, builtins.bytes]] = []
        items = size = 0
        with self._lock:
            for path in list(self._sizes):
                try:
                    data = path.read_bytes()
                except FileNotFoundError:  # removed behind our back: forget it
                    self._forget(path)
                    continue
                n = self._counts.get(path)
                if n is None:
                    try:
                        n = self.count_items(data)
                    except (ValueError, TypeError):
                        n = 0
                    self._counts[path] = n
                if out and (items + n > max_items or size + len(data) > max_bytes):
                    break
                out.append((path, data))
                items += n
                size += len(data)
        return out

    def remove(self, path: Path) -> None:
        """Delete a segment once its content is stored (or quarantined)."""
        with self._lock:
            path.unlink(missing_ok=True)
            self._forget(path)

    def set_aside(self, path: Path, why: str) -> None:
        """Move an unreadable segment to ``<name>.bad`` for a person to inspect; it is never replayed."""
        log.error("spool segment %s is unreadable (%s); moved to %s.bad", path, why, path.name)
        with self._lock:
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, path.with_name(path.name + ".bad"))
            self._forget(path)


class RowSpool(SegmentSpool):
    """Spool of value rows (the collector's batch writer), one JSON array per segment.

    Parameters
    ----------
    folder : path-like
        Spool folder (created with 0700 permissions).
    max_bytes : int
        Upper bound of the spool size [bytes].
    """

    def __init__(self, folder: str | os.PathLike, max_bytes: int = 1 << 30) -> None:
        super().__init__(folder, max_bytes, suffix=".json", what="values")

    def count_items(self, data: bytes) -> int:
        return len(json.loads(data))

    @property
    def dropped_values(self) -> int:
        """Values dropped because the spool was full."""
        return self.dropped

    def append(self, rows: list[Row]) -> None:
        """Write one batch of rows as a segment (see :meth:`SegmentSpool.append_bytes`)."""
        if rows:
            data = json.dumps([[r[0], r[1], r[2], r[3], r[4], r[5]] for r in rows], separators=(",", ":")).encode()
            self.append_bytes(data, len(rows))

    def peek(self) -> tuple[Path, list[Row]] | None:
        """The oldest segment and its rows, or None when empty; a corrupt segment is set aside."""
        while True:
            item = self.oldest()
            if item is None:
                return None
            path, data = item
            try:
                raw = json.loads(data)
                return path, [(m, tuple(tuple(kv) for kv in tags), f, int(t), v, int(s))
                              for m, tags, f, t, v, s in raw]
            except (ValueError, TypeError) as exc:
                self.set_aside(path, str(exc))
