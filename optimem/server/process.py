"""`optimem serve` as a child process on a free loopback port: what tests and benchmarks start.

Not used by the service itself; it lives here so the REST tests, the viewer tests, the
scale-out test and the load benchmarks start servers one way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without the caller's own OPTIMEM_* settings (the cache dir stays)."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith("OPTIMEM_") or k == "OPTIMEM_CACHE_DIR"}
    return {**keep, "PYTHONPATH": str(ROOT), **(extra or {})}


class Server:
    """One `optimem serve` process on 127.0.0.1; `start()` returns once `/readyz` answers 200."""

    def __init__(
        self,
        db: Path | str,
        *args: str,
        backend: str = "test-double",
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ):
        self.db = db
        self.args = ["--db", str(db), "--backend", backend, *args]
        self.env = child_env(env)
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log = log or Path(str(db)).with_suffix(".log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Server:
        self.port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "optimem.cli",
            "serve",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        out = self.log.open("ab")
        self.proc = subprocess.Popen(cmd + self.args, cwd=ROOT, env=self.env, stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        # one plain-HTTP client for every poll: a new one per poll loads the CA bundle (~30 ms)
        with httpx.Client(base_url=self.url, timeout=1.0, verify=False, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
                try:
                    if client.get("/readyz").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not become ready:\n{self.log.read_text()}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (uvicorn's graceful shutdown) and wait; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
