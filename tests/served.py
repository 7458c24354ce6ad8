"""A running `edge-search serve` for tests: the installed script in a subprocess, bound to 127.0.0.1,
spoken to over real HTTP, and stopped by its pid (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

from cluster import free_port

from conftest import console_script


class Service:
    def __init__(self, env: dict, *args: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - a file, not a pipe: a chatty service never blocks
        self.proc = subprocess.Popen(
            [console_script("edge-search"), "serve", "--port", str(self.port), *args],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.headers: dict[str, str] = {}

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def wait_ready(self, headers: dict | None = None) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                self.get("/api/health", headers=headers)
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        raise AssertionError("the service did not start")

    def request(
        self, path: str, data: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, dict | bytes, str]:
        request = urllib.request.Request(self.base + path, data=data, headers={**self.headers, **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, body, kind = response.status, response.read(), response.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            status, body, kind = exc.code, exc.read(), exc.headers.get("content-type", "")
        return status, (json.loads(body) if kind.startswith("application/json") else body), kind

    def get(self, path: str, headers: dict | None = None):
        status, body, kind = self.request(path, headers=headers)
        if isinstance(body, dict) and status >= 500:
            raise AssertionError(body)
        return status, body, kind

    def upload(self, content: bytes, **fields: str):
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.request("/api/query", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def health(self) -> dict:
        return self.get("/api/health")[1]

    def wait_until(self, condition, what: str, timeout: float = 120.0):
        """Poll `condition()` until it returns something truthy (returned); fail naming `what`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            if value := condition():
                return value
            time.sleep(0.2)
        raise AssertionError(f"gave up waiting for {what}; health: {self.health()}\n{self.output()[-3000:]}")

    def kill(self) -> None:
        """kill -9, as a power cut or the OOM killer would."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
