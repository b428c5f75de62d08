"""One storage interface over local paths (plain or file://) and s3://bucket/key URLs.

The module-level functions look the URL's scheme up in an explicit registry of backends,
so callers never branch on where data lives. S3 goes through boto3 and the standard AWS
configuration: credentials chain, AWS_ENDPOINT_URL(_S3) for MinIO, Ceph, R2 or a test server.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR
from typing import Any, BinaryIO, Protocol
from urllib.parse import quote, unquote, urlsplit

import boto3
from boto3.exceptions import Boto3Error
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from colorization.constants import S3_MAX_ATTEMPTS

logger = logging.getLogger(__name__)


_TMP_SUFFIX = ".tmp"
# S3 reports a missing key as NoSuchKey (GET) or a bare 404 (HEAD, which has no body).
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})


@dataclass(frozen=True)
class FileInfo:
    """Size and version of a file; `version` is the S3 ETag (unquoted) or the local mtime_ns."""

    url: str
    size: int
    version: str


class Backend(Protocol):
    """One kind of storage; the module-level functions dispatch to these methods."""

    remote: bool

    def list_files(self, prefix: str) -> list[str]: ...
    def list_infos(self, prefix: str) -> list[FileInfo]: ...
    def read_bytes(self, url: str) -> bytes: ...
    def write_bytes(self, url: str, data: bytes) -> None: ...
    def exists(self, url: str) -> bool: ...
    def delete(self, url: str) -> None: ...
    def stat(self, url: str) -> FileInfo: ...
    def download(self, url: str, local_path: Path) -> None: ...
    def upload(self, local_path: Path, url: str) -> None: ...
    def relative_key(self, url: str, prefix: str) -> str: ...


def _atomic_write(dest: Path, fill: Callable[[BinaryIO], object]) -> None:
    """Writes `dest` via a hidden temp file in its folder, so readers never see half a file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}{_TMP_SUFFIX}"
    # os.open with 0o666 honours the umask like a plain open(); mkstemp would leave 0600.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fill(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class LocalBackend:
    """Plain paths and file:// URLs on the local file system."""

    remote = False

    @staticmethod
    def _path(url: str) -> Path:
        if "://" not in url:
            return Path(url)
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file URL with a remote host is not supported: {url}")
        return Path(unquote(parts.path))

    @contextmanager
    def _named(self, url: str) -> Iterator[None]:
        # Re-raise with the caller's URL, not our derived path, in the message.
        try:
            yield
        except FileNotFoundError as exc:
            raise FileNotFoundError(errno.ENOENT, "No such file", url) from exc

    def list_files(self, prefix: str) -> list[str]:
        root = self._path(prefix)
        # One stat, not is_dir() then exists(): a folder created between those two calls (a
        # writer's first file) read as "not a folder".
        try:
            mode = root.stat().st_mode
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "No such folder", prefix) from None
        if not S_ISDIR(mode):
            raise NotADirectoryError(errno.ENOTDIR, "Not a folder", prefix)
        # file:// URLs are percent-encoded, so relative parts must be too to round-trip.
        encode = quote if "://" in prefix else str

        def fail(exc: OSError) -> None:
            raise exc  # os.walk would otherwise skip unreadable folders silently

        urls = []
        for dirpath, _dirs, names in os.walk(root, onerror=fail):
            for name in names:
                if not (name.startswith(".") and name.endswith(_TMP_SUFFIX)):  # our atomic writes
                    rel = Path(dirpath, name).relative_to(root).as_posix()
                    urls.append(join(prefix, encode(rel)))
        return urls

    def list_infos(self, prefix: str) -> list[FileInfo]:
        return [self.stat(url) for url in self.list_files(prefix)]

    def read_bytes(self, url: str) -> bytes:
        with self._named(url):
            return self._path(url).read_bytes()

    def write_bytes(self, url: str, data: bytes) -> None:
        _atomic_write(self._path(url), lambda fh: fh.write(data))

    def exists(self, url: str) -> bool:
        return self._path(url).is_file()

    def delete(self, url: str) -> None:
        with suppress(FileNotFoundError):
            self._path(url).unlink()

    def stat(self, url: str) -> FileInfo:
        with self._named(url):
            st = self._path(url).stat()
        return FileInfo(url=url, size=st.st_size, version=str(st.st_mtime_ns))

    def download(self, url: str, local_path: Path) -> None:
        with self._named(url):
            source = open(self._path(url), "rb")  # noqa: SIM115 - closed just below
        with source:
            _atomic_write(local_path, lambda fh: shutil.copyfileobj(source, fh))

    def upload(self, local_path: Path, url: str) -> None:
        with open(local_path, "rb") as source:
            _atomic_write(self._path(url), lambda fh: shutil.copyfileobj(source, fh))

    def relative_key(self, url: str, prefix: str) -> str:
        path, root = (os.path.abspath(self._path(u)) for u in (url, prefix))
        if os.path.commonpath([path, root]) != root or path == root:
            raise ValueError(f"{url} is not under {prefix}")
        return Path(path).relative_to(root).as_posix()


_client: BaseClient | None = None
_client_lock = threading.Lock()


def s3_client() -> BaseClient:
    """Returns this process's S3 client (standard AWS configuration), created on first use."""
    global _client
    client = _client
    if client is None:
        with _client_lock:
            if _client is None:
                # total_max_attempts counts the first try; botocore's max_attempts would not.
                config = Config(retries={"mode": "standard", "total_max_attempts": S3_MAX_ATTEMPTS})
                # A private Session: boto3's default session is not safe to share across threads.
                _client = boto3.session.Session().client("s3", config=config)
                logger.debug("created S3 client for endpoint %s", _client.meta.endpoint_url)
            client = _client
    return client


def reset_clients() -> None:
    """Drops the cached S3 client so the next call reads the environment again."""
    global _client
    with _client_lock:
        _client = None


def _after_fork_in_child() -> None:
    # A forked child (e.g. a DataLoader worker) must not share the parent's connection
    # pool, nor inherit a lock some parent thread held at fork time.
    global _client, _client_lock
    _client, _client_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _split_s3(url: str, *, need_key: bool = True) -> tuple[str, str]:
    bucket, _, key = url.split("://", 1)[1].partition("/")
    if not bucket or (need_key and not key):
        raise ValueError(f"expected s3://bucket/key, got {url}")
    return bucket, key


class StorageError(OSError):
    """An object-store call failed for a reason other than a missing object (access denied,
    no credentials, endpoint unreachable after retries); the message names the URL."""


@contextmanager
def _s3_errors(url: str) -> Iterator[None]:
    """Re-raise boto errors as OSErrors naming `url`, so callers handle local and S3 alike."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") in _MISSING_CODES:
            raise FileNotFoundError(errno.ENOENT, "No such S3 object or bucket", url) from exc
        raise StorageError(f"{url}: S3 error {error.get('Code')}: {error.get('Message')}") from exc
    except (BotoCoreError, Boto3Error) as exc:  # no credentials, unreachable, upload failed
        raise StorageError(f"{url}: {exc}") from exc


class S3Backend:
    """s3://bucket/key URLs through boto3."""

    remote = True

    def list_files(self, prefix: str) -> list[str]:
        return [info.url for info in self.list_infos(prefix)]

    def list_infos(self, prefix: str) -> list[FileInfo]:
        bucket, key = _split_s3(prefix, need_key=False)
        # A prefix is a folder: s3://b/photos must not match photos2/...
        folder = key.rstrip("/") + "/" if key.strip("/") else ""
        infos: list[FileInfo] = []
        with _s3_errors(prefix):
            paginator = s3_client().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=folder):
                # Keys ending in "/" are folder markers made by consoles, not files.
                infos.extend(FileInfo(url=f"s3://{bucket}/{o['Key']}", size=int(o["Size"]),
                                      version=o["ETag"].strip('"'))
                             for o in page.get("Contents", ()) if not o["Key"].endswith("/"))
        return infos

    def read_bytes(self, url: str) -> bytes:
        bucket, key = _split_s3(url)
        with _s3_errors(url):
            return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def write_bytes(self, url: str, data: bytes) -> None:
        bucket, key = _split_s3(url)
        with _s3_errors(url):
            s3_client().put_object(Bucket=bucket, Key=key, Body=data)

    def exists(self, url: str) -> bool:
        try:
            self.stat(url)
        except FileNotFoundError:
            return False
        return True

    def delete(self, url: str) -> None:
        bucket, key = _split_s3(url)
        with _s3_errors(url):
            s3_client().delete_object(Bucket=bucket, Key=key)  # 204 for a missing key too

    def stat(self, url: str) -> FileInfo:
        bucket, key = _split_s3(url)
        with _s3_errors(url):
            head = s3_client().head_object(Bucket=bucket, Key=key)
        return FileInfo(url=url, size=int(head["ContentLength"]), version=head["ETag"].strip('"'))

    def download(self, url: str, local_path: Path) -> None:
        bucket, key = _split_s3(url)
        with _s3_errors(url):
            _atomic_write(local_path, lambda fh: s3_client().download_fileobj(bucket, key, fh))

    def upload(self, local_path: Path, url: str) -> None:
        bucket, key = _split_s3(url)
        if not local_path.is_file():
            raise FileNotFoundError(errno.ENOENT, "No such file", str(local_path))
        with _s3_errors(url):
            s3_client().upload_file(str(local_path), bucket, key)  # multipart above 8 MiB

    def relative_key(self, url: str, prefix: str) -> str:
        bucket, key = _split_s3(url)
        root_bucket, root = _split_s3(prefix, need_key=False)
        folder = root.rstrip("/") + "/" if root.strip("/") else ""
        if bucket != root_bucket or not key.startswith(folder) or key == folder:
            raise ValueError(f"{url} is not under {prefix}")
        return key[len(folder):]


_BACKENDS: dict[str, Backend] = {"file": LocalBackend(), "s3": S3Backend()}


def _backend(url: str) -> Backend:
    # Only "<scheme>://" makes a URL, so C:\ paths and names with colons stay local.
    scheme = url.split("://", 1)[0].lower() if "://" in url else "file"
    if scheme not in _BACKENDS:
        raise ValueError(f"unsupported storage URL {url!r}; supported schemes: {sorted(_BACKENDS)}")
    return _BACKENDS[scheme]


def join(base: str, *parts: str) -> str:
    """Joins '/'-separated parts onto a path or URL without doubling slashes."""
    _backend(base)
    segments = [seg for part in parts for seg in part.split("/") if seg]
    if not segments:
        return base
    return (base if not base or base.endswith("/") else base + "/") + "/".join(segments)


def is_remote(url: str) -> bool:
    """Returns True when the URL names object storage rather than the local disk."""
    return _backend(url).remote


def list_files(prefix: str, *, suffixes: tuple[str, ...] | None = None) -> list[str]:
    """Lists all files under a folder prefix, recursively, as sorted full URLs.

    Args:
        prefix: A folder: ``s3://b/photos`` lists the keys under ``photos/``.
        suffixes: Keep only names ending in one of these (case-insensitive), e.g. (".jpg",).

    Raises:
        FileNotFoundError: The local folder or the bucket does not exist.
    """
    logger.debug("list %s", prefix)
    urls = _backend(prefix).list_files(prefix)
    if suffixes is not None:
        if isinstance(suffixes, str):  # a lone ".jpg" would otherwise iterate per character
            suffixes = (suffixes,)
        wanted = tuple(s.lower() for s in suffixes)
        urls = [u for u in urls if u.lower().endswith(wanted)]
    return sorted(urls)


def list_infos(prefix: str) -> list[FileInfo]:
    """Like `list_files` (no filter), with each file's size and version, sorted by URL; S3
    takes them from the listing itself (no request per object)."""
    return sorted(_backend(prefix).list_infos(prefix), key=lambda info: info.url)


def remove_stale_temp_files(prefix: str) -> int:
    """Deletes the hidden temp files that killed local writes left under a folder; returns
    how many. Object stores need none (a PUT is atomic). Only for folders one job writes."""
    if is_remote(prefix) or not os.path.isdir(local_path(prefix)):
        return 0
    stale = [p for p in Path(local_path(prefix)).rglob(f".*{_TMP_SUFFIX}") if p.is_file()]
    for path in stale:
        with suppress(FileNotFoundError):
            path.unlink()
    return len(stale)


def read_bytes(url: str) -> bytes:
    """Reads a whole file; a missing one raises FileNotFoundError naming the URL."""
    logger.debug("read %s", url)
    return _backend(url).read_bytes(url)


def write_bytes(url: str, data: bytes) -> None:
    """Writes a whole file atomically, creating local parent folders."""
    logger.debug("write %s (%d bytes)", url, len(data))
    _backend(url).write_bytes(url, data)


def read_text(url: str, *, encoding: str = "utf-8") -> str:
    """Reads a text file."""
    return read_bytes(url).decode(encoding)


def write_text(url: str, text: str, *, encoding: str = "utf-8") -> None:
    """Writes a text file atomically."""
    write_bytes(url, text.encode(encoding))


def read_json(url: str) -> Any:
    """Reads a JSON document."""
    return json.loads(read_bytes(url))


def write_json(url: str, obj: Any, *, indent: int | None = 2) -> None:
    """Writes `obj` as UTF-8 JSON atomically."""
    write_text(url, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def exists(url: str) -> bool:
    """Returns True when a file (not a folder) exists at the URL."""
    return _backend(url).exists(url)


def delete(url: str) -> None:
    """Deletes a file; a missing one is not an error."""
    logger.debug("delete %s", url)
    _backend(url).delete(url)


def stat(url: str) -> FileInfo:
    """Returns size and version of a file; raises FileNotFoundError if missing."""
    return _backend(url).stat(url)


def download(url: str, local_path: str | Path) -> Path:
    """Copies a file to a local path atomically and returns that path."""
    logger.debug("download %s -> %s", url, local_path)
    local_path = Path(local_path)
    _backend(url).download(url, local_path)
    return local_path


def upload(local_path: str | Path, url: str) -> None:
    """Copies a local file to the URL (S3: multipart for big files; local: atomic)."""
    logger.debug("upload %s -> %s", local_path, url)
    _backend(url).upload(Path(local_path), url)


def relative_key(url: str, prefix: str) -> str:
    """Returns the '/'-separated part of `url` under the folder `prefix`.

    Raises:
        ValueError: `url` is not inside `prefix`.
    """
    backend = _backend(url)
    if _backend(prefix) is not backend:
        raise ValueError(f"{url} is not under {prefix}")
    return backend.relative_key(url, prefix)


def local_path(url: str) -> str:
    """The filesystem path of a local URL (plain path or file://).

    Raises:
        ValueError: `url` names object storage, which has no local path.
    """
    backend = _backend(url)
    if not isinstance(backend, LocalBackend):
        raise ValueError(f"{url} is not a local path")
    return str(backend._path(url))


# Issue 6: read-only http(s):// (COCO mirrors), in its own module; registered last because
# it builds on this module's FileInfo, StorageError and atomic writes.
from colorization.storage_http import HttpBackend  # noqa: E402

_BACKENDS["http"] = _BACKENDS["https"] = HttpBackend()
