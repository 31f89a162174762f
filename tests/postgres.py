"""A throwaway PostgreSQL server for the test suite and the benchmarks.

`start_server()` runs `initdb` into a new temp folder and `pg_ctl start` on a free 127.0.0.1
port, with the unix socket inside that folder (nothing else on the machine is touched); `stop()`
stops it and deletes the folder. Each test then gets a database of its own
(`create_database`, optionally a copy of a template database).

PostgreSQL refuses to run as root: as root the server runs as the `postgres` user that Debian's
package creates (else `nobody`). The binaries come from `$WB_TEST_PG_BIN`, else the newest
`/usr/lib/postgresql/*/bin` (Debian), else `initdb` on the PATH; `scripts/install_postgres.sh`
(run by `make test`) installs them where missing. `WB_TEST_PG_URL` (a superuser URL) points the
suite at a server of your own instead: then nothing is started.
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

DRIVER = "postgresql+psycopg"


class Unavailable(Exception):
    """No PostgreSQL server can be started here; the message says why (a test skip reason)."""


def find_bindir() -> Path:
    if os.environ.get("WB_TEST_PG_BIN"):
        return Path(os.environ["WB_TEST_PG_BIN"])
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.parent.name)] or [0])
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise Unavailable("PostgreSQL's initdb was not found (apt-get install postgresql; scripts/install_postgres.sh)")


def _run_as() -> str | None:
    """The user the server runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise Unavailable("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    """A running server: `url(name)` for SQLAlchemy, `create_database()` for a fresh one."""

    host: str
    port: int
    user: str
    folder: Path | None = None  # ours to delete (None: a server of your own)
    bindir: Path | None = None
    run_as: str | None = None
    _made: list[str] = field(default_factory=list)

    def url(self, database: str = "postgres") -> str:
        return f"{DRIVER}://{self.user}@{self.host}:{self.port}/{database}"

    def _admin(self):
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True)

    def create_database(self, name: str | None = None, *, template: str | None = None) -> str:
        """A new empty database (or a copy of `template`, which must have no open connections); its URL."""
        name = name or f"wb_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        self._made.append(name)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.folder is None:  # a server of your own: only drop what we made
            for name in self._made:
                self.drop_database(name)
            return
        assert self.bindir is not None
        subprocess.run([str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop"],
                       user=self.run_as, capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_server() -> PostgresServer:
    """Start a throwaway server (or use `WB_TEST_PG_URL`); raises Unavailable with the reason."""
    own = os.environ.get("WB_TEST_PG_URL")
    if own:
        from sqlalchemy.engine import make_url

        u = make_url(own)
        return PostgresServer(host=u.host or "127.0.0.1", port=u.port or 5432, user=u.username or "postgres")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise Unavailable("the psycopg driver is not installed (pip install 'psycopg[binary]')") from None
    bindir = find_bindir()
    run_as = _run_as()
    folder = Path(tempfile.mkdtemp(prefix="wb-pg-"))
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    os.chmod(folder, 0o755)
    data, port = folder / "data", free_port()
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    try:
        _check(subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "wb", "-A", "trust", "-E", "UTF8",
                               "--locale=C", "--no-sync"], user=run_as, env=env, cwd=folder,
                              capture_output=True, text=True, timeout=120), "initdb")
        # Durability off: a test server is thrown away, and fsync costs most of a test's time.
        options = (f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=300")
        _check(subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "server.log"),
                               "-w", "-t", "60", "start"], user=run_as, env=env, cwd=folder,
                              capture_output=True, text=True, timeout=90), "pg_ctl start", folder / "server.log")
    except (Unavailable, OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise Unavailable(f"PostgreSQL did not start: {exc}") from None
    return PostgresServer(host="127.0.0.1", port=port, user="wb", folder=folder, bindir=bindir, run_as=run_as)


def _check(done: subprocess.CompletedProcess, what: str, log: Path | None = None) -> None:
    if done.returncode == 0:
        return
    tail = (done.stderr or done.stdout or "").strip().splitlines()[-3:]
    if log is not None and log.exists():
        tail += log.read_text(errors="replace").strip().splitlines()[-3:]
    raise Unavailable(f"{what} exited {done.returncode}: {' | '.join(tail)}")
