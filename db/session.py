"""Engine and sessions. One `Database` per command; one transaction per unit of work.

SQLite gets foreign keys, WAL and a busy timeout on every connection. Opening a database checks
that it is wb's before anything is written: a missing file is created only when asked
(`create=True`, as `wb import` does), another program's database is refused, and a schema
revision this code does not know (a newer wb) is refused. wb's own schema is brought to the
newest Alembic revision when the database is opened.
"""
from __future__ import annotations

import ast
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")


class DatabaseUnusable(Exception):
    """The location cannot serve as wb's database; `hint` says what to do.

    `db` imports nothing of ours, so workbench.workspace turns this into a WorkbenchError.
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


def database_url(location: str) -> str:
    """Accept a file path or an SQLAlchemy URL; return a URL. Creates nothing."""
    if "://" in location:
        return location
    return f"sqlite:///{Path(location).expanduser().resolve()}"


def sqlite_file(url: URL) -> Path | None:
    """The file behind an SQLite URL; None for other databases and in-memory SQLite."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if url.database.startswith("file:"):
        return None
    return Path(url.database)


def describe(url: URL) -> str:
    """How messages name a database: the file for SQLite, else the URL with the password hidden."""
    path = sqlite_file(url)
    return str(path) if path is not None else url.render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # Per connection, nothing persistent: journal_mode=WAL is written into the file, so it is set
    # once the file is known to be wb's (see Database.__init__).
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def json_dumps(value) -> str:
    """JSON columns' serializer: strict JSON, a non-finite float (NaN, inf) stored as null.

    PostgreSQL's json type refuses Python's `NaN` token outright; SQLite would store it as text
    that its own JSON functions reject. Both backends store the same thing this way.
    """
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False)


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _revision_graph() -> tuple[set[str], set[str]]:
    """(every revision id, the ids some migration revises), read from the version files'
    `revision` and `down_revision` assignments (importing alembic costs ~0.1 s, a fifth of `wb status`)."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, expr = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:  # `revision: str = "0002"`
                target, expr = node.target, node.value
            else:
                continue
            if not isinstance(target, ast.Name) or target.id not in ("revision", "down_revision"):
                continue
            value = ast.literal_eval(expr)
            values = set(value) if isinstance(value, (tuple, list)) else {value} if value else set()
            (revisions if target.id == "revision" else revised).update(values)
    return revisions, revised


def head_revisions() -> set[str]:
    """Revision ids that no migration revises."""
    revisions, revised = _revision_graph()
    return revisions - revised


def known_revisions() -> set[str]:
    """Every revision id this code has a migration for."""
    return _revision_graph()[0]


def _stamped_revisions(conn: Connection) -> set[str]:
    if not inspect(conn).has_table("alembic_version"):
        return set()
    return set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision (no-op when current)."""
    with engine.connect() as conn:
        stamped = _stamped_revisions(conn)
    if stamped and stamped == head_revisions():
        return  # current: alembic is not even imported
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current == head:
        return
    with engine.begin() as conn:
        # Two commands opening a new database at once: the second waits here, then finds it current.
        _write_lock(conn)
        if MigrationContext.configure(conn).get_current_revision() == head:
            return
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _write_lock(conn) -> None:
    """Take the database's write lock at the start of `conn`'s transaction (others wait for it)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7760001)")  # one wb-wide key


def check_schema(engine: Engine, *, create: bool) -> str:
    """'wb' (a wb database) or 'empty' (nothing in it yet, and `create`); refuse anything else.

    Read-only: nothing is written to a database this refuses.
    """
    shown = describe(engine.url)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        stamped = _stamped_revisions(conn) if "alembic_version" in tables else set()
    others = sorted(tables - {"alembic_version"})
    if stamped:
        unknown = sorted(stamped - known_revisions())
        if unknown:
            raise DatabaseUnusable(
                f"{shown} has schema revision {unknown[0]!r}, which this wb does not know",
                "it was written by a newer wb (upgrade wb) or by another program (give another --db)",
            )
        return "wb"
    if others:
        listed = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise DatabaseUnusable(
            f"{shown} is not a wb database: it holds other tables ({listed}) and no wb schema version",
            "give wb a database of its own, e.g. --db wb.db; wb writes nothing into this one",
        )
    if not create:
        raise DatabaseUnusable(f"{shown} holds no wb workspace yet", "`wb import PATH` creates one; check --db / WB_DB")
    return "empty"


class Database:
    """Owns the engine and hands out sessions.

    `created`: this open made a new database file (SQLite). `new`: this open found no wb schema
    and made one: a new file, or an empty database on a server (PostgreSQL).
    """

    def __init__(self, location: str, *, migrate: bool = True, create: bool = True):
        try:
            url = make_url(database_url(location))
        except ArgumentError:
            raise DatabaseUnusable(f"Not a database path or URL: {location}",
                                   "give a file path, sqlite:///PATH or postgresql://USER@HOST/NAME") from None
        self.url = url.render_as_string(hide_password=False)
        self.created = False
        path = sqlite_file(url)
        if path is not None:
            self.created = self._prepare_file(path, create)
        try:
            self.engine = create_engine(url, json_serializer=json_dumps)
        except ArgumentError as exc:  # includes NoSuchModuleError: an unknown scheme
            raise DatabaseUnusable(f"wb cannot use the database URL {describe(url)}: {exc}",
                                   "give a file path, sqlite:///PATH or postgresql://USER@HOST/NAME") from None
        except ModuleNotFoundError as exc:
            raise DatabaseUnusable(f"The database URL {describe(url)} needs the Python module {exc.name!r}",
                                   "install that database's driver into wb's environment") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            self.new = check_schema(self.engine, create=create) == "empty"
            if self.engine.dialect.name == "sqlite":
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            if migrate:
                upgrade(self.engine)
        except DBAPIError as exc:
            self.engine.dispose()
            if self.created and path is not None:
                path.unlink(missing_ok=True)
            raise DatabaseUnusable(f"Cannot open the database {self.shown}: {first_line(exc.orig)}",
                                   "check --db / WB_DB: a wb database file, or a server that is up and lets you in") from None
        except DatabaseUnusable:
            self.engine.dispose()
            raise
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def shown(self) -> str:
        """The file (SQLite) or the URL with any password hidden (for messages)."""
        return describe(make_url(self.url))

    @staticmethod
    def _prepare_file(path: Path, create: bool) -> bool:
        """Check an SQLite path before connecting (connecting would create it). True: it is new."""
        if path.is_dir():
            raise DatabaseUnusable(f"{path} is a folder, not a database file", f"give a file path, e.g. {path / 'wb.db'}")
        if path.exists():
            return False
        if not create:
            raise DatabaseUnusable(f"No wb database at {path}",
                                   "`wb import PATH` creates one there; check --db / WB_DB for a typo")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnusable(f"Cannot create the folder for the database {path}: {exc.strerror}",
                                   "give a --db path in a folder you may write to") from None
        return True

    @contextmanager
    def session(self, *, exclusive: bool = False) -> Iterator[Session]:
        """A session in one transaction: commit on success, roll back on any error.

        `exclusive`: the transaction takes the database's write lock before its first read, so
        two commands that read-then-write the same rows (two `wb ls push`es) run one after the
        other instead of racing; the second waits (SQLite: up to the 30 s busy timeout).
        """
        with self._factory() as session, session.begin():
            if exclusive:
                _write_lock(session.connection())
            yield session

    def transact(self, work: Callable[[Session], T], *, attempts: int = 3, exclusive: bool = False) -> T:
        """`work(session)` in one transaction, run again from the start when another writer won a race.

        For work that reads what it is about to write (so a rerun sees the other writer's rows):
        a unique-key clash (IntegrityError), a deadlock or serialization failure, or SQLite's
        "database is locked" is retried; after `attempts` the error is raised. `exclusive`: the
        transaction holds the write lock from its first read (see `session`), so what it read
        cannot change before it writes: decisions such as "the first copy of this content" hold.
        """
        for attempt in range(1, attempts + 1):
            try:
                with self.session(exclusive=exclusive) as s:
                    return work(s)
            except (IntegrityError, OperationalError) as exc:
                if attempt == attempts or not is_race(exc):
                    raise
        raise AssertionError("unreachable")

    def table_names(self) -> list[str]:
        return inspect(self.engine).get_table_names()

    def dispose(self) -> None:
        self.engine.dispose()


def is_race(exc: DBAPIError) -> bool:
    """A failure that another writer caused and a retry can get past."""
    if isinstance(exc, IntegrityError):
        return True
    text = str(exc.orig).lower()
    return "database is locked" in text or "deadlock" in text or "could not serialize" in text


def first_line(exc: BaseException | None) -> str:
    text = str(exc or "").strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_database(location: str, *, migrate: bool = True, create: bool = True) -> Database:
    return Database(location, migrate=migrate, create=create)
