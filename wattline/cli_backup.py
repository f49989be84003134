"""``wattline backup DEST`` / ``wattline restore SRC``: the embedded store (series and results) and the work orders.

A backup is one tar file holding a consistent snapshot of each SQLite database, taken with SQLite's online backup API
while the services keep writing (the copy is one read transaction, so it is the database as of one commit), and a
``manifest.json`` with each file's SHA-256, size and schema versions. Restore checks every checksum and the versions
before it replaces anything, replaces each file atomically (and removes a stale write-ahead log beside it, which SQLite
would otherwise apply to the restored file), and opens the store once so that an older layout is migrated forward.

What is not in it: an InfluxDB store (use InfluxDB's own ``influx backup``), a PostgreSQL work-order database
(``pg_dump``), and models: Wattline's analytics refit their models on each run and store their outputs as results,
so nothing else lives on disk.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import sqlite3
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import typer

from core.errors import ConfigError, WattlineError

MANIFEST = "manifest.json"
FORMAT = "wattline-backup"
FORMAT_VERSION = 1


class BackupError(WattlineError):
    """A backup or restore failed at run time (exit 1)."""


def store_path(url: str) -> Path:
    """The file of an embedded store URL; ConfigError for InfluxDB (it has its own backup)."""
    if "://" not in url:
        return Path(url)
    if url.startswith("sqlite:///"):
        from core.storage.sqlite import parse_sqlite_url

        return parse_sqlite_url(url)
    raise ConfigError(f"store {url.split('?', 1)[0]} is InfluxDB: back it up with InfluxDB's own tool "
                      "('influx backup', see docs/operations.md); wattline backup covers the embedded store")


def orders_path(store: Path) -> Path:
    """The embedded work-order database beside a store (``core.orders.db.orders_url``)."""
    return Path(f"{store}.orders.db")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _meta(path: Path) -> dict:
    """Versions recorded in a database: the store's layout, its result tables, the orders' Alembic revision."""
    out: dict = {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" in tables:
            out.update({k: v for k, v in conn.execute(
                "SELECT key, value FROM meta WHERE key IN ('schema_version', 'results_version')")})
        if "alembic_version" in tables:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            out["alembic_revision"] = row[0] if row else None
        if "series" in tables:
            out["series"] = conn.execute("SELECT count(*) FROM series").fetchone()[0]
    finally:
        conn.close()
    return out


def snapshot(source: Path, dest: Path) -> None:
    """Copy a live SQLite database to ``dest`` with the online backup API (a consistent copy as of one commit).

    Raises
    ------
    BackupError
        When the source cannot be read or is not an SQLite database.
    """
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30.0)
        try:
            dst = sqlite3.connect(dest)
            try:
                # pages=-1: the whole file in one step, i.e. in one read transaction (writers in WAL mode go on).
                src.backup(dst, pages=-1)
                dst.execute("PRAGMA journal_mode=DELETE")  # a self-contained file, no -wal beside it
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy {source}: {exc}; is it a Wattline database?") from None


def make_backup(store_url: str, dest: Path, *, orders: Path | None = None) -> tuple[Path, dict]:
    """Write a backup tar of the embedded store (with its results) and the work orders when present.

    Parameters
    ----------
    store_url : str
        The embedded store (path or sqlite:///path).
    dest : Path
        A folder (a file ``wattline-backup-<UTC time>.tar`` is made in it) or a ``.tar`` file.
    orders : Path, optional
        The work-order database; default: the one beside the store, when it exists.

    Returns
    -------
    (Path, dict)
        The tar file and its manifest.
    """
    from wattline import __version__

    store = store_path(store_url)
    if not store.is_file():
        raise ConfigError(f"store {store} does not exist; give the embedded store with --store")
    orders = orders if orders is not None else orders_path(store)
    if orders is not None and not orders.exists():
        orders = None
    now = dt.datetime.now(dt.UTC)
    target = dest if dest.suffix == ".tar" else dest / f"wattline-backup-{now:%Y%m%dT%H%M%SZ}.tar"
    if target.exists():
        raise ConfigError(f"{target} exists; choose another destination (backups are never overwritten)")
    target.parent.mkdir(parents=True, exist_ok=True)
    parts = [("store", store, "store.db")] + ([("orders", orders, "orders.db")] if orders is not None else [])
    files: list[dict[str, Any]] = []
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "wattline_version": __version__,
                "created_at": now.isoformat(timespec="seconds"), "files": files}
    with tempfile.TemporaryDirectory(prefix="wattline-backup-", dir=target.parent) as tmp:
        for kind, source, name in parts:
            copy = Path(tmp) / name
            snapshot(source, copy)
            files.append({"name": name, "kind": kind, "source": str(source.resolve()),
                                      "bytes": copy.stat().st_size, "sha256": _sha256(copy), **_meta(copy)})
        partial = target.with_name(target.name + ".partial")
        with tarfile.open(partial, "w") as tar:
            data = json.dumps(manifest, indent=1).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(data), int(now.timestamp()), 0o600
            tar.addfile(info, io.BytesIO(data))
            for _, _, name in parts:
                tar.add(Path(tmp) / name, arcname=name)
        os.chmod(partial, 0o600)  # the store holds a plant's data; the orders hold people's names
        os.replace(partial, target)
    return target, manifest


def read_backup(src: Path, workdir: Path) -> dict:
    """Unpack a backup into ``workdir`` and check its manifest and every checksum; return the manifest.

    Raises
    ------
    BackupError
        Naming the file that is missing or damaged.
    """
    if not src.is_file():
        raise ConfigError(f"backup {src} does not exist; give a file made by 'wattline backup'")
    try:
        with tarfile.open(src, "r") as tar:
            names = tar.getnames()
            if MANIFEST not in names:
                raise BackupError(f"{src} has no {MANIFEST}: not a Wattline backup")
            member = tar.extractfile(MANIFEST)
            if member is None:  # a directory or a link by that name
                raise BackupError(f"{src}: {MANIFEST} is not a regular file: not a Wattline backup")
            manifest = json.loads(member.read())
            if manifest.get("format") != FORMAT:
                raise BackupError(f"{src}: {MANIFEST} is not a Wattline backup manifest")
            if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
                raise BackupError(f"{src} was written by a newer Wattline (backup format "
                                  f"{manifest['format_version']}, this one reads {FORMAT_VERSION}); upgrade Wattline")
            for entry in manifest["files"]:
                name = entry["name"]
                if name not in names or "/" in name or name.startswith("."):
                    raise BackupError(f"{src}: {name} is listed in the manifest but not in the archive")
                tar.extract(name, workdir, filter="data")
                got = _sha256(workdir / name)
                if got != entry["sha256"]:
                    raise BackupError(f"{src}: {name} is damaged (SHA-256 {got[:12]}..., the manifest says "
                                      f"{entry['sha256'][:12]}...); use another backup")
    except (tarfile.TarError, OSError, ValueError, KeyError) as exc:
        raise BackupError(f"cannot read backup {src}: {exc}") from None
    return manifest


def _replace(copy: Path, target: Path) -> None:
    """Put ``copy`` in place of ``target`` atomically, with no stale write-ahead log left beside it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(target.name + ".restoring")
    os.replace(copy, staged)
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    os.replace(staged, target)


def restore_backup(src: Path, store_url: str, *, force: bool = False) -> dict:
    """Restore a backup: the store (with its results) to ``store_url``, the work orders beside it.

    The store is opened once afterwards, so that an older layout is migrated forward (a newer one is refused before
    anything is replaced).
    """
    from core.storage.results_sqlite import RESULTS_VERSION
    from core.storage.sqlite import _SCHEMA_VERSION

    store = store_path(store_url)
    targets = {"store": store, "orders": orders_path(store)}
    with tempfile.TemporaryDirectory(prefix="wattline-restore-", dir=store.resolve().parent if store.parent.exists() else None) as tmp:
        manifest = read_backup(src, Path(tmp))
        for entry in manifest["files"]:
            for key, ours in (("schema_version", _SCHEMA_VERSION), ("results_version", RESULTS_VERSION)):
                if key in entry and str(entry[key]).isdigit() and int(entry[key]) > int(ours):
                    raise BackupError(f"{src}: {entry['name']} has {key} {entry[key]}, newer than this Wattline "
                                      f"understands ({ours}); restore it with the Wattline that wrote it "
                                      f"({manifest.get('wattline_version')}) or newer")
        existing = [str(targets[e["kind"]]) for e in manifest["files"] if targets[e["kind"]].exists()]
        if existing and not force:
            raise ConfigError(f"{', '.join(existing)} exist(s); stop the services using them and pass --force to "
                              "replace them, or restore into another --store")
        for entry in manifest["files"]:
            _replace(Path(tmp) / entry["name"], targets[entry["kind"]])
    from core.storage import open_store

    open_store(str(store)).close()  # migrate an older layout forward now, once
    return manifest


def register(app: typer.Typer) -> None:
    """Add ``backup`` and ``restore`` to the ``wattline`` command line."""

    @app.command()
    def backup(
        dest: Path = typer.Argument(..., help="Folder for wattline-backup-<UTC time>.tar, or a .tar file to write."),
        store: str | None = typer.Option(None, "--store", "-s", help="Embedded store (path or sqlite:///path; default wattline.db)."),
        orders: Path | None = typer.Option(None, "--orders", help="Work-order database (SQLite; default <store>.orders.db when it exists).", dir_okay=False),
        config: Path | None = typer.Option(None, "--config", "-c", help="YAML settings file (key: store); options override it.", dir_okay=False),
    ) -> None:
        """Back up the embedded store (series and results) and the work orders into one tar with a manifest and
        checksums; a consistent snapshot while the services keep running."""
        from wattline.settings import read_app_settings

        settings = read_app_settings(config, {"store": store})
        target, manifest = make_backup(settings.store, dest, orders=orders)
        files = ", ".join(f"{f['name']} ({f['bytes'] / 1e6:.1f} MB)" for f in manifest["files"])
        typer.echo(f"backup written to {target}: {files}")

    @app.command()
    def restore(
        src: Path = typer.Argument(..., help="Backup tar written by 'wattline backup'.", dir_okay=False),
        store: str | None = typer.Option(None, "--store", "-s", help="Embedded store to restore to (default wattline.db); the work orders go beside it."),
        force: bool = typer.Option(False, "--force", help="Replace existing files (stop the services first)."),
        config: Path | None = typer.Option(None, "--config", "-c", help="YAML settings file (key: store); options override it.", dir_okay=False),
    ) -> None:
        """Restore a backup: checks every checksum and version first, then replaces the files atomically and migrates
        an older layout forward."""
        from wattline.settings import read_app_settings

        settings = read_app_settings(config, {"store": store})
        manifest = restore_backup(src, settings.store, force=force)
        typer.echo(f"restored {', '.join(f['name'] for f in manifest['files'])} from {src} "
                   f"(made {manifest['created_at']} by Wattline {manifest['wattline_version']})")
