"""Helpers for end-to-end tests: real simulator over a socket, the real `watchd run` process.

No patching: the daemon is a subprocess with its own config file, stopped with real signals.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from io import BytesIO
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

KEY = "e2e-test-key-0123"
RUNNING: list[DaemonProcess] = []  # reaped by the autouse fixture in conftest.py


def image_bytes(size: tuple[int, int], fmt: str = "PNG", seed: int = 0) -> bytes:
    """A small image whose bytes differ with `seed` (so hashes differ)."""
    img = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, 120))
    img.putpixel((seed % size[0], 0), (255, 255, 255))
    buf = BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def drop(
    path: Path, size: tuple[int, int] = (200, 150), seed: int = 0, fmt: str | None = None
) -> bytes:
    """Write an image the way a careful copier does (temp name, then rename in)."""
    fmt = fmt or ("PNG" if path.suffix.lower() == ".png" else "JPEG")
    data = image_bytes(size, fmt, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def folder_paths(root: Path, name: str) -> dict[str, str]:
    base = root / name
    for sub in ("inbox", "outbox", "done", "failed"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    return {k: str(base / k) for k in ("inbox", "outbox", "done", "failed")}


def write_config(
    root: Path,
    base_url: str,
    folders: Iterable[dict[str, Any]],
    api: dict[str, Any] | None = None,
    **top: Any,
) -> Path:
    cfg = {
        "api": {"base_url": base_url, "qps": 20, "poll_interval": 0.2, **(api or {})},
        "state_dir": str(root / "state"),
        "retry": {"max_attempts": 5, "base_delay": 0.1, "max_delay": 1},
        "log": {"format": "json", "level": "info"},
        "http": {"listen": "127.0.0.1:0"},  # a port of its own: tests run side by side
        **top,
        "folders": [{**folder_paths(root, f["name"]), "settle": 0.2, **f} for f in folders],
    }
    path = root / "watchd.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return path


class DaemonProcess:
    """`python -m watchd run` as a child process, logs in a file."""

    def __init__(
        self, config: Path, env: dict[str, str] | None = None, wrap: list[str] | None = None
    ) -> None:
        self.config = config
        self.wrap = wrap or []  # e.g. ["unshare", "-m", "sh", "-c", "... exec \"$@\"", "sh"]
        self.log_path = config.parent / f"daemon-{time.monotonic_ns()}.log"
        self.env = {**os.environ, "WATCHD_API_KEY": KEY, **(env or {})}
        self.env.pop("NOTIFY_SOCKET", None) if "NOTIFY_SOCKET" not in (env or {}) else None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        self.log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*self.wrap, sys.executable, "-m", "watchd", "run", "-c", str(self.config)],
            stdout=self.log_file,
            stderr=self.log_file,
            env=self.env,
        )
        RUNNING.append(self)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.log_file.closed:
            self.log_file.close()

    def wait_started(self, timeout: float = 20) -> None:
        wait_for(
            lambda: "watchd started" in self.log() or self.proc.poll() is not None,
            timeout,
            "daemon start",
        )
        assert self.proc.poll() is None, self.log()

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log_file.close()
            if self in RUNNING:
                RUNNING.remove(self)
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchd", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "WATCHD_API_KEY": KEY, **(env or {})},
    )


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size
