"""The work-order database: which one, opening it, and its schema version.

- Embedded: an SQLite file beside the embedded store (``wattline.db`` -> ``wattline.db.orders.db``). Every write
  transaction starts with ``BEGIN IMMEDIATE``, so concurrent writers (the analytics service, dashboard workers, the
  CLI) queue for the write lock instead of failing half-way or overwriting each other.
- Shared: PostgreSQL, ``postgresql+psycopg://user@host:port/db?passfile=/path/.pgpass`` (driver psycopg 3). The
  password comes from a passfile (libpq refuses one that others can read) or ``$PGPASSWORD``, never from the
  repository; URLs are only ever shown with the password hidden.

:func:`open_orders_db` checks the schema version on start: an older schema is migrated forward (Alembic, under a
lock so that two processes starting at once migrate once); a schema newer than this Wattline is refused with a clear
message (no downgrade: the audit log must not be lost).
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.errors import ConfigError
from core.orders import OrdersError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
#: Key of the PostgreSQL advisory lock held while the schema is checked and migrated.
_PG_LOCK = 0x5761_7474  # "Watt"


def orders_url(store_url: str | None, db_url: str | None = None) -> str:
    """The database URL: ``db_url`` when given, else an SQLite file beside an embedded store.

    Raises
    ------
    ConfigError
        For a store that is not a file (InfluxDB) and no ``db_url``.
    """
    if db_url:
        if not db_url.startswith(("sqlite:", "postgresql")):
            raise ConfigError(f"--db {safe_url(db_url)!r}: use sqlite:///path/orders.db or "
                              "postgresql+psycopg://user@host:port/db?passfile=/path/.pgpass")
        if db_url.startswith(("postgresql://", "postgres://")):
            db_url = "postgresql+psycopg://" + db_url.split("://", 1)[1]
        return db_url
    store_url = store_url or "wattline.db"
    if "://" not in store_url:
        path = store_url
    elif store_url.startswith("sqlite:///"):
        path = store_url[len("sqlite:///"):]
    else:
        raise ConfigError(f"store {store_url.split('?')[0]} is not an embedded file, so there is no place beside it "
                          "for the orders: give --db postgresql+psycopg://user@host:port/db?passfile=FILE "
                          "(or sqlite:///path/orders.db)")
    return f"sqlite:///{path}.orders.db"


def safe_url(url: str) -> str:
    """The URL with any password hidden (for messages and logs)."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL that does not parse is shown without its user part
        return url.split("@")[-1]


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    try:
        import psycopg  # noqa: F401 - the driver SQLAlchemy loads for postgresql+psycopg
    except ImportError:
        raise ConfigError("PostgreSQL needs the psycopg driver: pip install 'psycopg[binary]'") from None
    return sa.create_engine(url, pool_pre_ping=True)


def _alembic():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg, ScriptDirectory.from_config(cfg)


def schema_head() -> str:
    """The newest schema revision this Wattline knows."""
    return _alembic()[1].get_current_head()


def ensure_schema(engine: Engine) -> str:
    """Check the schema version and migrate forward when it is older; return the revision now in the database.

    Raises
    ------
    OrdersError
        When the database was written by a newer Wattline (a revision this one does not know): downgrades are refused.
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    cfg, script = _alembic()
    head = script.get_current_head()
    known = {rev.revision for rev in script.walk_revisions()}
    with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE holds the write lock for the whole check
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK})")
        current = MigrationContext.configure(conn).get_current_revision()
        if current == head:
            return head
        if current is not None and current not in known:
            raise OrdersError(f"orders database {safe_url(str(engine.url))} has schema revision {current!r}, newer than "
                              f"this Wattline knows (up to {head!r}); downgrades are refused so that no audit history "
                              "is lost: upgrade Wattline, or open a backup made with this version")
        log.info("orders database %s: migrating schema %s -> %s", safe_url(str(engine.url)), current, head)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return head


def open_orders_db(url: str) -> Engine:
    """Open (and create or migrate) the work-order database at ``url``.

    Raises
    ------
    OrdersError
        When it cannot be reached or its schema is newer than this Wattline.
    """
    if url.startswith("sqlite:///"):
        parent = Path(url[len("sqlite:///"):]).expanduser().resolve().parent
        if not parent.is_dir():
            raise ConfigError(f"orders database {url}: folder {parent} does not exist")
    engine = _engine(url)
    try:
        ensure_schema(engine)
    except sa.exc.OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise OrdersError(f"orders database {safe_url(url)}: cannot open: {reason}") from None
    except BaseException:
        engine.dispose()
        raise
    return engine
