"""Start, stop and inspect a local Label Studio server that wb runs for the user.

Everything lives in one folder (`<workspace>/ls/`): `data/` (the server's own database and
media), `server.log`, `server.json` (pid, port, URL, document root; no secrets) and
`credentials.json` (admin e-mail, password and API token). The token is never written anywhere
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

from annotations.errors import ServerStartError

ADMIN_EMAIL = "wb@localhost"
STATE_FILE = "server.json"
CREDENTIALS_FILE = "credentials.json"
LOG_FILE = "server.log"
LAST_PORT_FILE = "last_port"  # a restart reuses it when free, so bookmarks keep working
START_TIMEOUT_S = 300.0  # first start runs migrations: ~50 s on 2 cores, more when the machine is busy
_KEEP_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "SYSTEMROOT")
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


def server_env(creds: Credentials, data_dir: Path, document_root: Path) -> dict[str, str]:
    """A clean environment for `label-studio start`: only what it needs, telemetry off."""
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
    return env


def start_server(
    folder: Path, document_root: Path, *, port: int | None = None, timeout: float = START_TIMEOUT_S
) -> tuple[ServerState, subprocess.Popen[bytes] | None]:
    """Start Label Studio on 127.0.0.1 and wait until it answers.

    Returns the state and the process (None when a server wb started is already running here).
    A server from an earlier run whose document root differs is an error: stop it first.
    """
    make_private(folder)  # a folder from an older wb may hold a 0644 database with the token
    current = load_state(folder)
    if current is not None and pid_alive(current.pid) and is_answering(current.url):
        if Path(current.document_root) != document_root:
            raise ServerStartError(
                f"The running server serves files under {current.document_root}, the images need {document_root}",
                "run `wb ls stop` and then `wb ls serve` again",
            )
        return current, None
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
            cmd, env=server_env(creds, data_dir, document_root), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=folder, start_new_session=True,  # Ctrl-C in a shell does not reach it
            umask=PRIVATE_UMASK,
        )
    state = ServerState(proc.pid, port, url, str(data_dir), str(document_root), str(log_path))
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
