"""Start, stop and inspect a local Label Studio server that wb runs for the user.

Everything lives in one folder (`<workspace>/ls/`): `data/` (the server's own database and
media), `server.log`, `server.json` (pid, port, URL, document root, where its database is; no
secrets) and `credentials.json` (admin e-mail, password and API token).

Label Studio's own database is SQLite in `data/` unless the server was first started with a
PostgreSQL URL (`wb ls serve --ls-db postgresql://...`, for a team): that URL is remembered in
`ls_database.json` (0600: it may hold a password) and used by every later start; Label Studio
reads it as `DJANGO_DB=default` + `POSTGRE_NAME/USER/PASSWORD/HOST/PORT` (label_studio 1.23:
core/settings/base.py and label_studio.py). The token is never written anywhere
else by wb, but Label Studio keeps it (and the password hash) in `data/label_studio.sqlite3`: the
folder is 0700 and its files 0600 (the server runs with umask 077; an older folder is tightened
on the next start).

The server is spawned with a clean environment: Label Studio reads `LABEL_STUDIO_X`, then
`HEARTEX_X`, then bare `X`, so a stray USERNAME, PASSWORD, HOST or PORT would leak in.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from annotations.errors import ServerStartError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

ADMIN_EMAIL = "wb@localhost"
STATE_FILE = "server.json"
CREDENTIALS_FILE = "credentials.json"
LOG_FILE = "server.log"
DATABASE_FILE = "ls_database.json"
LAST_PORT_FILE = "last_port"  # a restart reuses it when free, so bookmarks keep working
START_TIMEOUT_S = 300.0  # first start runs migrations: ~50 s on 2 cores, more when the machine is busy
_KEEP_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "SYSTEMROOT")
SQLITE_FILE = "label_studio.sqlite3"  # Label Studio's own database when it runs on SQLite
PRIVATE_UMASK = 0o077  # what the server creates in data/ is readable by its owner only


@dataclass(frozen=True)
class Credentials:
    email: str
    password: str
    token: str

    def __repr__(self) -> str:  # keep secrets out of tracebacks and logs
        return f"Credentials(email={self.email!r}, password=***, token=***)"


@dataclass(frozen=True)
class ServerState:
    pid: int
    port: int
    url: str
    data_dir: str
    document_root: str
    log: str
    database: str = "sqlite"  # 'sqlite', or the PostgreSQL URL with its password hidden


def load_credentials(folder: Path) -> Credentials | None:
    path = folder / CREDENTIALS_FILE
    if not path.is_file():
        return None
    return Credentials(**json.loads(path.read_text()))


def ensure_credentials(folder: Path) -> Credentials:
    """The admin credentials for a server in `folder`, made once (0600 file)."""
    existing = load_credentials(folder)
    if existing is not None:
        return existing
    folder.mkdir(parents=True, exist_ok=True)
    creds = Credentials(ADMIN_EMAIL, secrets.token_urlsafe(18), secrets.token_hex(20))  # token: 40 chars, LS allows 6..40
    fd = os.open(folder / CREDENTIALS_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(creds), fh)
    return creds


def make_private(folder: Path) -> None:
    """`folder` and everything below it: owner-only (dirs 0700, files 0600); links are left alone."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o700)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o600)


def load_state(folder: Path) -> ServerState | None:
    path = folder / STATE_FILE
    if not path.is_file():
        return None
    return ServerState(**json.loads(path.read_text()))


def free_port(preferred: int | None = None) -> int:
    """`preferred` when it is free on 127.0.0.1, else any free port."""
    for wanted in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", wanted))
            except OSError:
                continue
            port: int = sock.getsockname()[1]
            return port
    raise OSError("no free port on 127.0.0.1")


def _last_port(folder: Path) -> int | None:
    try:
        return int((folder / LAST_PORT_FILE).read_text())
    except (OSError, ValueError):
        return None


def known_url(folder: Path) -> str | None:
    """The URL of the server wb runs from `folder`: where it runs, else where it ran last (a
    restart takes the same port when it is free); None when it never ran."""
    state = load_state(folder)
    if state is not None:
        return state.url
    port = _last_port(folder)
    return f"http://127.0.0.1:{port}" if port else None


def is_answering(url: str, timeout: float = 2.0) -> bool:
    """True when GET /api/version answers 200 (needs no token)."""
    import httpx  # here, not at import: `wb status` reads server.json without paying for httpx

    try:
        return httpx.get(f"{url}/api/version", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)  # our own child: reap it if it exited
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def label_studio_executable() -> str:
    beside = Path(sys.executable).with_name("label-studio")
    found = str(beside) if beside.is_file() else shutil.which("label-studio")
    if not found:
        raise ServerStartError(
            "label-studio is not installed in this environment",
            'install the extra: pip install -e ".[ls]" (or point WB_LS_URL/WB_LS_TOKEN at your own server)',
        )
    return found


def server_env(creds: Credentials, data_dir: Path, document_root: Path, database: str | None = None) -> dict[str, str]:
    """A clean environment for `label-studio start`: only what it needs, telemetry off.

    database: a PostgreSQL URL for Label Studio's own data (None: SQLite in data_dir).
    """
    env = {k: os.environ[k] for k in _KEEP_ENV if k in os.environ}
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_USERNAME": creds.email,
        "LABEL_STUDIO_PASSWORD": creds.password,
        "LABEL_STUDIO_USER_TOKEN": creds.token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "PYTHONUNBUFFERED": "1",
    })
    if database is not None:
        env.update(postgres_env(database))
    return env


def _postgres_url(database: str) -> URL:
    """The parsed PostgreSQL URL; ServerStartError (password never shown) for anything else."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(database)
    except ArgumentError:
        raise ServerStartError("--ls-db is not a database URL",
                               "give postgresql://USER:PASSWORD@HOST:PORT/DATABASE") from None
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise ServerStartError(f"Label Studio keeps its data in SQLite or PostgreSQL, not {url.get_backend_name()!r}",
                               "give postgresql://USER:PASSWORD@HOST:PORT/DATABASE, or leave out --ls-db for SQLite")
    if not url.database:
        raise ServerStartError(f"{shown_database(database)} names no database",
                               "add it to the URL: postgresql://USER@HOST:PORT/DATABASE")
    return url


def shown_database(database: str | None) -> str:
    """How messages and server.json name Label Studio's database: 'sqlite', or the URL without its password."""
    if database is None:
        return "sqlite"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(database).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a URL)"


def postgres_env(database: str) -> dict[str, str]:
    """Label Studio's settings for a PostgreSQL URL: DJANGO_DB=default and the POSTGRE_* variables.

    Every POSTGRE_* is set, so none of Label Studio's defaults (user and password 'postgres')
    applies; a URL without a password sends none (libpq then reads ~/.pgpass). A socket folder
    can be given as `?host=/path`.
    """
    url = _postgres_url(database)
    host = url.host or url.query.get("host") or "localhost"
    return {
        "DJANGO_DB": "default",
        "POSTGRE_NAME": str(url.database),
        "POSTGRE_USER": url.username or "postgres",
        "POSTGRE_PASSWORD": url.password or "",
        "POSTGRE_HOST": host if isinstance(host, str) else host[0],
        "POSTGRE_PORT": str(url.port or 5432),
    }


def check_postgres(database: str, timeout_s: int = 10) -> None:
    """Connect once, so a wrong URL is one line now instead of a server that never answers."""
    env = postgres_env(database)
    try:
        import psycopg  # Label Studio's own PostgreSQL driver (installed with label-studio)
    except ImportError:
        raise ServerStartError("Label Studio on PostgreSQL needs the psycopg package",
                               'install the extra: pip install -e ".[ls]"') from None
    try:
        psycopg.connect(dbname=env["POSTGRE_NAME"], user=env["POSTGRE_USER"], password=env["POSTGRE_PASSWORD"] or None,
                        host=env["POSTGRE_HOST"], port=int(env["POSTGRE_PORT"]), connect_timeout=timeout_s).close()
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ServerStartError(f"Cannot connect to Label Studio's database {shown_database(database)}: {first}",
                               "check the URL, that the server is up, and that the user may create tables there") from None


def remembered_database(folder: Path) -> str | None:
    """The PostgreSQL URL this folder's server keeps its data in (None: SQLite)."""
    path = folder / DATABASE_FILE
    if not path.is_file():
        return None
    return str(json.loads(path.read_text())["url"])


def choose_database(folder: Path, database: str | None) -> str | None:
    """Label Studio's database for a start: the one given, else the one remembered (None: SQLite).

    A server keeps its data where it was first started: switching would leave wb's project ids
    pointing into another database, so a different database (or PostgreSQL for a folder whose
    server already ran on SQLite) is refused. The same URL with another password is accepted
    (a rotated password). `remember_database` stores it once the server answered.
    """
    remembered = remembered_database(folder)
    if database is None or database == remembered:
        return remembered
    _postgres_url(database)
    if remembered is not None and shown_database(remembered) != shown_database(database):
        raise ServerStartError(
            f"This workspace's Label Studio keeps its data in {shown_database(remembered)}, not {shown_database(database)}",
            f"leave out --ls-db, or move {folder} aside to start a new Label Studio (its projects are then new)")
    if remembered is None and (folder / "data" / SQLITE_FILE).exists():
        raise ServerStartError(
            f"This workspace's Label Studio already keeps its data in SQLite ({folder / 'data' / SQLITE_FILE})",
            f"leave out --ls-db, or move {folder} aside to start a new Label Studio on PostgreSQL (its projects are then new)")
    return database


def remember_database(folder: Path, database: str | None) -> None:
    """Keep the PostgreSQL URL for later starts (0600: it may hold a password)."""
    if database is None or database == remembered_database(folder):
        return
    fd = os.open(folder / DATABASE_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": database}, fh)


def start_server(
    folder: Path, document_root: Path, *, port: int | None = None, timeout: float = START_TIMEOUT_S,
    database: str | None = None,
) -> tuple[ServerState, subprocess.Popen[bytes] | None]:
    """Start Label Studio on 127.0.0.1 and wait until it answers.

    Returns the state and the process (None when a server wb started is already running here).
    A server from an earlier run whose document root differs is an error: stop it first.
    database: a PostgreSQL URL for Label Studio's own data (see `choose_database`; None: the
    one remembered, else SQLite).
    """
    make_private(folder)  # a folder from an older wb may hold a 0644 database with the token
    current = load_state(folder)
    if current is not None and pid_alive(current.pid) and is_answering(current.url):
        if Path(current.document_root) != document_root:
            raise ServerStartError(
                f"The running server serves files under {current.document_root}, the images need {document_root}",
                "run `wb ls stop` and then `wb ls serve` again",
            )
        if database is not None and shown_database(database) != current.database:
            raise ServerStartError(f"The running server keeps its data in {current.database}, not {shown_database(database)}",
                                   "leave out --ls-db, or run `wb ls stop` first")
        return current, None
    database = choose_database(folder, database)
    if database is not None:
        check_postgres(database)
    creds = ensure_credentials(folder)
    data_dir = folder / "data"
    data_dir.mkdir(mode=0o700, exist_ok=True)
    port = port or free_port(_last_port(folder))
    url = f"http://127.0.0.1:{port}"
    if is_answering(url):
        raise ServerStartError(f"Something already answers on port {port}", "pick another --port or leave it out")
    log_path = folder / LOG_FILE
    cmd = [label_studio_executable(), "start", "--no-browser", "--internal-host", "127.0.0.1",
           "--port", str(port), "--data-dir", str(data_dir)]
    with open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        proc = subprocess.Popen(
            cmd, env=server_env(creds, data_dir, document_root, database), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=folder, start_new_session=True,  # Ctrl-C in a shell does not reach it
            umask=PRIVATE_UMASK,
        )
    state = ServerState(proc.pid, port, url, str(data_dir), str(document_root), str(log_path), shown_database(database))
    (folder / STATE_FILE).write_text(json.dumps(asdict(state), indent=2))
    (folder / LAST_PORT_FILE).write_text(str(port))
    deadline = time.monotonic() + timeout
    while not is_answering(url):
        if proc.poll() is not None:
            _forget(folder)
            raise ServerStartError(
                f"label-studio exited with code {proc.returncode} before answering: {_log_tail(log_path)}",
                f"see {log_path}",
            )
        if time.monotonic() > deadline:
            stop_server(folder)
            raise ServerStartError(f"Label Studio did not answer within {timeout:.0f} s", f"see {log_path}")
        time.sleep(0.5)
    remember_database(folder, database)
    return state, proc


def stop_server(folder: Path, *, grace: float = 15.0) -> bool:
    """Stop the server wb started in `folder` (its process group, by PID). False if none ran."""
    state = load_state(folder)
    if state is None:
        return False
    running = pid_alive(state.pid)
    if running:
        _signal_group(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while pid_alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(state.pid):
            _signal_group(state.pid, signal.SIGKILL)
            time.sleep(0.2)
            pid_alive(state.pid)  # reap
    _forget(folder)
    return running


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # start_new_session made pid the group leader
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _forget(folder: Path) -> None:
    (folder / STATE_FILE).unlink(missing_ok=True)


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])[-400:]
