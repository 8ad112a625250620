"""A throwaway PostgreSQL server in a temporary folder, from the system's binaries (tests, benchmarks).

`initdb` refuses to run as root, so as root the server runs as the ``postgres`` user; it
listens on 127.0.0.1 and a free port, with its socket inside the folder.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

#: Where Debian puts the server binaries; `$OPTIMEM_PG_BIN` overrides.
PG_BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")


def find_pg_bin() -> Path | None:
    """The folder holding `initdb` and `pg_ctl`, or None when PostgreSQL is not installed."""
    candidates = [os.environ.get("OPTIMEM_PG_BIN", ""), *PG_BIN_DIRS]
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    """Start with `start()`, stop with `stop()`; `url(db)` connects to database `db`."""

    def __init__(self, bin_dir: Path | None = None, port: int | None = None) -> None:
        found = bin_dir or find_pg_bin()
        if found is None:
            raise FileNotFoundError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.bin = found
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="optimem-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as = None
        if os.geteuid() == 0:
            self._as = "postgres"
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._as:
            cmd = ["runuser", "-u", self._as, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> LocalPostgres:
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                      "--locale=C", "--no-sync")  # fmt: skip
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        return create_database(self.url(), name)


def create_database(server_url: str, name: str | None = None, *, replace: bool = False) -> str:
    """Create database `name` (a fresh random one by default) on the server of `server_url`;
    returns its URL. `replace` drops an existing one of that name first."""
    import psycopg
    from psycopg import sql

    name = name or f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        if replace:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def with_database(url: str, name: str) -> str:
    """`url` (``postgresql://…/db?…``) pointing at database `name` instead."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))
