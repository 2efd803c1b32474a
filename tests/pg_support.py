"""A throw-away PostgreSQL cluster for the tests: initdb into a temp folder, pg_ctl on a free
loopback port, sockets in that folder, removed afterwards.

PostgreSQL refuses to run as root, so as root the cluster runs as ``nobody``. Without the
binaries the tests that need it skip, naming why; with ``CI`` set they fail instead, since CI
installs PostgreSQL and must never pass by skipping them.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL's binaries (Debian keeps them off PATH)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def need_postgres() -> Path:
    bindir = find_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        message = (
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb or pg_ctl "
            "on PATH): apt-get install postgresql"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {message}")
        pytest.skip(message)
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        message = "psycopg 3 and psycopg-pool are not installed: pip install '.[postgres]'"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {message}")
        pytest.skip(message)
    return bindir


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """One cluster; :meth:`stop` and :meth:`start` let a test take the database away."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="aura-otel-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._user: list[str] = []
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
            self._user = ["runuser", "-u", "nobody", "--"]
        self._run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        self.running = False

    def _run(self, cmd: list[str]) -> None:
        result = subprocess.run(
            self._user + cmd,
            check=False,
            capture_output=True,
            text=True,
            cwd=self.root,
            timeout=180,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{cmd[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.root} -c max_connections=200"
        )
        # -w: pg_ctl itself waits (bounded by -t) until the server accepts connections.
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.root / "log"),
                "-w",
                "-t",
                "120",
                "start",
            ]
        )
        self.running = True

    def stop(self) -> None:
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "fast",
                "-w",
                "-t",
                "120",
                "stop",
            ]
        )
        self.running = False

    def remove(self) -> None:
        try:
            if self.running:
                self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
        return self.url(name)
