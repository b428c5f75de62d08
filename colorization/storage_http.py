"""Read-only http(s):// storage for colorization.storage: GET and HEAD with retries."""

from __future__ import annotations

import errno
import http.client
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from colorization.constants import DOWNLOAD_BACKOFF_S, HTTP_ATTEMPTS, HTTP_TIMEOUT_S
from colorization.storage import FileInfo, StorageError, _atomic_write

logger = logging.getLogger(__name__)


class HttpBackend:
    """Read-only http(s):// URLs (a COCO mirror, a published list): GET and HEAD with retries.

    Connection errors, timeouts, 429 and 5xx are retried with exponential backoff; 404 is a
    FileNotFoundError at once; writing raises PermissionError. Listing is impossible over
    plain HTTP, so it raises too.
    """

    remote = True

    def _open(self, url: str, method: str = "GET") -> Any:
        delay = DOWNLOAD_BACKOFF_S
        for attempt in range(1, HTTP_ATTEMPTS + 1):
            request = urllib.request.Request(url, method=method,
                                             headers={"User-Agent": "colorization"})
            try:
                return urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S)  # noqa: S310
            except urllib.error.HTTPError as exc:
                exc.close()
                if exc.code in (404, 410):
                    raise FileNotFoundError(errno.ENOENT, "No such HTTP resource", url) from exc
                if exc.code != 429 and exc.code < 500 or attempt == HTTP_ATTEMPTS:
                    raise StorageError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == HTTP_ATTEMPTS:
                    raise StorageError(f"{url}: {exc}") from exc
            logger.debug("retrying %s in %.1f s (attempt %d)", url, delay, attempt)
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def list_files(self, prefix: str) -> list[str]:
        raise StorageError(f"{prefix}: cannot list files over HTTP; name them instead")

    def list_infos(self, prefix: str) -> list[FileInfo]:
        return [self.stat(url) for url in self.list_files(prefix)]  # raises: no listing

    def read_bytes(self, url: str) -> bytes:
        with self._open(url) as response:
            expected = response.headers.get("Content-Length")
            try:
                data: bytes = response.read()
            except (http.client.HTTPException, OSError) as exc:  # e.g. IncompleteRead
                raise StorageError(f"{url}: read failed ({exc!r})") from exc
        if expected is not None and int(expected) != len(data):  # a cut connection
            raise StorageError(f"{url}: got {len(data)} of {expected} bytes")
        return data

    def write_bytes(self, url: str, data: bytes) -> None:
        raise PermissionError(errno.EACCES, "HTTP storage is read-only", url)

    def exists(self, url: str) -> bool:
        try:
            self._open(url, "HEAD").close()
        except FileNotFoundError:
            return False
        return True

    def delete(self, url: str) -> None:
        raise PermissionError(errno.EACCES, "HTTP storage is read-only", url)

    def stat(self, url: str) -> FileInfo:
        with self._open(url, "HEAD") as response:
            headers = response.headers
        version = headers.get("ETag") or headers.get("Last-Modified") or ""
        return FileInfo(url=url, size=int(headers.get("Content-Length") or 0),
                        version=version.strip('"'))

    def download(self, url: str, local_path: Path) -> None:
        data = self.read_bytes(url)
        _atomic_write(local_path, lambda fh: fh.write(data))

    def upload(self, local_path: Path, url: str) -> None:
        raise PermissionError(errno.EACCES, "HTTP storage is read-only", url)

    def relative_key(self, url: str, prefix: str) -> str:
        folder = prefix.rstrip("/") + "/"
        if not url.startswith(folder) or url == folder:
            raise ValueError(f"{url} is not under {prefix}")
        return url[len(folder):]
