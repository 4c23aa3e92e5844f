"""A small HTTP client of the service, used by the CLI's ``--server`` mode."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import httpx

from autopeft.errors import AutopeftError, StoreError


class ServiceClient:
    def __init__(self, url: str, token: str, timeout_s: float = 600.0) -> None:
        self._http = httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                                  timeout=timeout_s)
        self.url = url

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise StoreError(f"cannot reach the autopeft service at {self.url}: {exc}") from exc
        if response.status_code == 401:
            raise AutopeftError(f"the service at {self.url} refused the token (401)")
        if response.status_code >= 400:
            detail = response.json().get("detail") if response.headers.get("content-type", "").startswith("application/json") else response.text
            raise AutopeftError(f"{self.url}: {detail}")
        return response

    def submit(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/jobs", json=request).json()

    def jobs(self) -> list[dict[str, Any]]:
        return self._call("GET", "/jobs").json()

    def status(self, job_id: int) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}").json()

    def pareto(self, job_id: int, rung: int | None = None) -> list[dict[str, Any]]:
        return self._call("GET", f"/jobs/{job_id}/pareto", params={} if rung is None else {"rung": rung}).json()

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/cancel").json()

    def export(self, job_id: int, trial: int, fmt: str, out_dir: Path) -> list[Path]:
        """Download an export and unpack it into ``out_dir`` (members cannot escape it)."""
        archive = zipfile.ZipFile(io.BytesIO(self._call("GET", f"/jobs/{job_id}/export",
                                                         params={"trial": trial, "format": fmt}).content))
        out_dir = out_dir.expanduser().resolve()
        written = []
        for member in archive.namelist():
            target = (out_dir / member).resolve()
            if not target.is_relative_to(out_dir):
                raise AutopeftError(f"export archive member {member!r} would leave {out_dir}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(member))
            written.append(target)
        return written
