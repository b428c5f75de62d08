"""Tests of colorization.storage against the local disk and a real (moto) S3 server."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID

from colorization import storage


@pytest.fixture(params=["local", "file_url", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A storage root of each kind: a plain path, a file:// URL, an s3:// bucket."""
    if request.param == "s3":
        return request.getfixturevalue("s3_bucket")
    folder = tmp_path / "store root"  # a space checks file:// percent-encoding
    folder.mkdir()
    return str(folder) if request.param == "local" else folder.as_uri()


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp")]


# --- behaviour on every backend ------------------------------------------------------------


def test_bytes_text_json_round_trip(root: str) -> None:
    payload = bytes(range(256)) * 3
    storage.write_bytes(storage.join(root, "a/b/blob.bin"), payload)
    storage.write_text(storage.join(root, "notes.txt"), "grüße, 色")
    storage.write_json(storage.join(root, "meta/manifest.json"), {"seed": 0, "ids": [3, 1, 2]})

    assert storage.read_bytes(storage.join(root, "a/b/blob.bin")) == payload
    assert storage.read_text(storage.join(root, "notes.txt")) == "grüße, 色"
    manifest = storage.read_json(storage.join(root, "meta/manifest.json"))
    assert manifest == {"seed": 0, "ids": [3, 1, 2]}
    assert storage.read_text(storage.join(root, "meta/manifest.json")) == (
        '{\n  "seed": 0,\n  "ids": [\n    3,\n    1,\n    2\n  ]\n}\n'
    )


def test_overwrite_replaces_content(root: str) -> None:
    url = storage.join(root, "x.txt")
    storage.write_text(url, "first version")
    storage.write_text(url, "2nd")
    assert storage.read_text(url) == "2nd"


def test_exists_and_delete(root: str) -> None:
    url = storage.join(root, "dir/file.txt")
    assert storage.exists(url) is False
    storage.write_text(url, "hi")
    assert storage.exists(url) is True
    assert storage.exists(storage.join(root, "dir")) is False  # a folder is not a file
    storage.delete(url)
    assert storage.exists(url) is False
    storage.delete(url)  # missing is not an error
    assert storage.exists(url) is False


def test_list_files_recursive_sorted_and_filtered(root: str) -> None:
    for key in ["b.JPG", "a.jpg", "sub/deep/c.png", "sub/d.txt", "sub/e.jpeg"]:
        storage.write_bytes(storage.join(root, "photos", key), b"x")
    storage.write_bytes(storage.join(root, "photos2/outside.jpg"), b"x")  # sibling, not under
    storage.write_bytes(storage.join(root, "top.jpg"), b"x")

    photos = storage.join(root, "photos")
    expected = ["a.jpg", "b.JPG", "sub/d.txt", "sub/deep/c.png", "sub/e.jpeg"]
    assert storage.list_files(photos) == [storage.join(photos, k) for k in expected]
    assert storage.list_files(photos + "/") == [storage.join(photos, k) for k in expected]
    assert storage.list_files(photos, suffixes=(".jpg", ".PNG")) == [
        storage.join(photos, k) for k in ["a.jpg", "b.JPG", "sub/deep/c.png"]
    ]
    assert storage.list_files(photos, suffixes=()) == []
    # Listed URLs are readable as they are.
    assert [storage.read_bytes(u) for u in storage.list_files(photos)] == [b"x"] * 5


def test_stat_size_and_version(root: str) -> None:
    url = storage.join(root, "img/one.bin")
    storage.write_bytes(url, b"hello world")
    info = storage.stat(url)
    assert info == storage.FileInfo(url=url, size=11, version=info.version)
    if storage.is_remote(root):
        assert info.version == hashlib.md5(b"hello world").hexdigest()  # ETag, quotes stripped
    else:
        local = Path(unquote(urlsplit(url).path)) if "://" in url else Path(url)
        assert info.version == str(local.stat().st_mtime_ns)

    storage.write_bytes(url, b"hello there, world")
    again = storage.stat(url)
    assert again.size == 18
    if storage.is_remote(root):
        assert again.version == hashlib.md5(b"hello there, world").hexdigest()
    assert again.version != info.version
    with pytest.raises(AttributeError):
        again.size = 3  # type: ignore[misc]  # frozen


@pytest.mark.parametrize(
    "call",
    [storage.read_bytes, storage.read_text, storage.read_json, storage.stat],
    ids=["read_bytes", "read_text", "read_json", "stat"],
)
def test_missing_file_raises_file_not_found_naming_url(root: str, call) -> None:
    url = storage.join(root, "nope/missing.json")
    with pytest.raises(FileNotFoundError) as excinfo:
        call(url)
    assert url in str(excinfo.value)


def test_download_missing_raises_and_leaves_nothing(root: str, tmp_path: Path) -> None:
    url = storage.join(root, "missing.bin")
    target = tmp_path / "dl" / "out.bin"
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        storage.download(url, target)
    assert not target.exists()
    assert _temp_files(tmp_path / "dl") == []


def test_relative_key(root: str) -> None:
    prefix = storage.join(root, "in")
    assert storage.relative_key(storage.join(prefix, "a/b/c.jpg"), prefix) == "a/b/c.jpg"
    assert storage.relative_key(storage.join(prefix, "c.jpg"), prefix + "/") == "c.jpg"
    for outside in [storage.join(root, "in2/c.jpg"), storage.join(root, "c.jpg"), prefix]:
        with pytest.raises(ValueError, match="is not under"):
            storage.relative_key(outside, prefix)


def test_relative_key_of_listed_files(root: str) -> None:
    prefix = storage.join(root, "incoming")
    for key in ["2024/x.jpg", "y.jpg"]:
        storage.write_bytes(storage.join(prefix, key), b"1")
    keys = [storage.relative_key(u, prefix) for u in storage.list_files(prefix)]
    assert keys == ["2024/x.jpg", "y.jpg"]


def test_upload_download_round_trip(root: str, tmp_path: Path) -> None:
    # Above boto3's 8 MiB threshold, so S3 uses multipart upload and ranged downloads.
    data = os.urandom(9 * 1024 * 1024 + 123)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    url = storage.join(root, "up/big.bin")

    storage.upload(src, url)
    assert storage.stat(url).size == len(data)
    if storage.is_remote(root):
        assert storage.stat(url).version.endswith("-2")  # multipart ETag: two 8 MiB parts

    target = tmp_path / "new" / "dir" / "copy.bin"
    assert storage.download(url, str(target)) == target
    assert target.read_bytes() == data
    assert _temp_files(tmp_path) == []


def test_upload_missing_local_file(root: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="absent.bin"):
        storage.upload(tmp_path / "absent.bin", storage.join(root, "x.bin"))
    assert storage.exists(storage.join(root, "x.bin")) is False


def test_is_remote(root: str) -> None:
    assert storage.is_remote(root) is root.startswith("s3://")


# --- local specifics -----------------------------------------------------------------------


def test_local_write_leaves_no_temp_file(tmp_path: Path) -> None:
    url = str(tmp_path / "new" / "deep" / "f.json")
    storage.write_json(url, [1, 2])
    assert sorted(p.name for p in (tmp_path / "new" / "deep").iterdir()) == ["f.json"]


def test_local_failed_write_keeps_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(tmp_path / "f.txt")
    storage.write_text(url, "old")

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        storage.write_text(url, "new")
    with pytest.raises(OSError, match="disk gone"):
        storage.upload(tmp_path / "f.txt", str(tmp_path / "g.txt"))
    monkeypatch.undo()

    assert storage.read_text(url) == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_local_write_keeps_umask_permissions(tmp_path: Path) -> None:
    url = tmp_path / "perm.txt"
    storage.write_text(str(url), "x")
    umask = os.umask(0)
    os.umask(umask)
    assert url.stat().st_mode & 0o777 == 0o666 & ~umask


def test_local_list_skips_our_temp_files(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"1")
    (tmp_path / ".a.jpg.0123abcd.tmp").write_bytes(b"half")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".b.jpg.ff.tmp").write_bytes(b"half")
    assert storage.list_files(str(tmp_path)) == [str(tmp_path / "a.jpg")]


def test_local_list_missing_folder(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-folder")
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        storage.list_files(missing)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotADirectoryError):
        storage.list_files(str(tmp_path / "file.txt"))


def test_file_url_and_plain_path_are_the_same_file(tmp_path: Path) -> None:
    storage.write_text((tmp_path / "a b.txt").as_uri(), "same")
    assert storage.read_text(str(tmp_path / "a b.txt")) == "same"
    assert storage.relative_key(str(tmp_path / "d" / "x.txt"), tmp_path.as_uri()) == "d/x.txt"


# --- S3 specifics --------------------------------------------------------------------------


def test_s3_list_paginates_past_1000_keys(s3_bucket: str) -> None:
    bucket = s3_bucket.removeprefix("s3://")
    keys = [f"many/{i:05d}.txt" for i in range(1005)]
    # Seed through the server's own in-process backend: 1,005 HTTP PUTs cost ~6 s here, since
    # client and threaded server share one GIL. The listing below is real HTTP.
    s3 = get_backend("s3")[DEFAULT_ACCOUNT_ID]["aws"]
    for key in keys:
        s3.put_object(bucket, key, b".")
    pages: list[int] = []
    events = storage.s3_client().meta.events
    events.register("after-call.s3.ListObjectsV2", lambda **_: pages.append(1))

    listed = storage.list_files(f"{s3_bucket}/many")
    assert len(listed) == 1005
    assert listed == [f"{s3_bucket}/{k}" for k in keys]
    assert len(pages) == 2  # S3 returns at most 1,000 keys a page


def test_s3_list_bucket_root_skips_folder_markers(s3_bucket: str) -> None:
    storage.write_bytes(f"{s3_bucket}/a/x.jpg", b"1")
    storage.write_bytes(f"{s3_bucket}/a/", b"")  # a console-made "folder"
    storage.write_bytes(f"{s3_bucket}/z.jpg", b"1")
    assert storage.list_files(s3_bucket) == [f"{s3_bucket}/a/x.jpg", f"{s3_bucket}/z.jpg"]
    assert storage.list_files(f"{s3_bucket}/empty") == []


def test_s3_missing_bucket(s3_bucket: str) -> None:
    with pytest.raises(FileNotFoundError, match="s3://no-such-bucket-zz"):
        storage.list_files("s3://no-such-bucket-zz/photos")
    with pytest.raises(FileNotFoundError, match="s3://no-such-bucket-zz/k"):
        storage.read_bytes("s3://no-such-bucket-zz/k")


def test_s3_url_needs_bucket_and_key() -> None:
    with pytest.raises(ValueError, match="s3://bucket/key"):
        storage.read_bytes("s3://only-bucket")
    with pytest.raises(ValueError, match="s3://bucket/key"):
        storage.list_files("s3:///key")


def test_s3_client_config_and_cache(s3_bucket: str, s3_server: str) -> None:
    client = storage.s3_client()
    assert client.meta.config.retries["mode"] == "standard"
    assert client.meta.config.retries["total_max_attempts"] == storage.S3_MAX_ATTEMPTS
    assert client.meta.endpoint_url == s3_server  # from AWS_ENDPOINT_URL, not our code

    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(storage.s3_client())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(c is client for c in seen)

    storage.reset_clients()
    assert storage.s3_client() is not client


# --- dispatch and join ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda u: storage.read_bytes(u),
        lambda u: storage.write_bytes(u, b""),
        lambda u: storage.list_files(u),
        lambda u: storage.is_remote(u),
        lambda u: storage.join(u, "x"),
        lambda u: storage.exists(u),
    ],
)
def test_unknown_scheme_raises_value_error(call) -> None:
    with pytest.raises(ValueError) as excinfo:
        call("gs://bucket/key.jpg")
    message = str(excinfo.value)
    assert "gs://bucket/key.jpg" in message
    assert "'file'" in message and "'s3'" in message


@pytest.mark.parametrize(
    ("base", "parts", "expected"),
    [
        ("s3://bucket", ("photos", "a.jpg"), "s3://bucket/photos/a.jpg"),
        ("s3://bucket/", ("/photos/", "/a.jpg"), "s3://bucket/photos/a.jpg"),
        ("s3://bucket/pre", ("a//b/", "c"), "s3://bucket/pre/a/b/c"),
        ("s3://bucket/pre/", (), "s3://bucket/pre/"),
        ("s3://bucket/pre", ("", "/"), "s3://bucket/pre"),
        ("/data", ("models", "m1/card.json"), "/data/models/m1/card.json"),
        ("/data/", ("/models/",), "/data/models"),
        ("/", ("etc",), "/etc"),
        ("relative/dir", ("x.txt",), "relative/dir/x.txt"),
        ("file:///data", ("a", "b.txt"), "file:///data/a/b.txt"),
        ("file:///", ("a",), "file:///a"),
        ("S3://Bucket", ("k",), "S3://Bucket/k"),
    ],
)
def test_join(base: str, parts: tuple[str, ...], expected: str) -> None:
    assert storage.join(base, *parts) == expected


def test_is_remote_for_local_forms(tmp_path: Path) -> None:
    assert storage.is_remote(str(tmp_path)) is False
    assert storage.is_remote(tmp_path.as_uri()) is False
    assert storage.is_remote("C:\\photos\\a.jpg") is False  # a drive letter is not a scheme
    assert storage.is_remote("s3://b/k") is True


def test_relative_key_across_backends_is_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not under"):
        storage.relative_key("s3://b/in/x.jpg", str(tmp_path))


# ----------------------------------------------------------------------------------------
# Issue 6: the read-only http(s) backend (a COCO mirror), against http.server on loopback.
# ----------------------------------------------------------------------------------------
def test_http_backend_reads_retries_and_refuses_writes(tmp_path, monkeypatch):
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from colorization import storage_http

    monkeypatch.setattr(storage_http, "DOWNLOAD_BACKOFF_S", 0.01)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.txt").write_bytes(b"hello")
    calls: list[str] = []

    class Flaky(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            calls.append(self.path)
            if self.path.endswith("flaky.txt") and calls.count(self.path) < 3:
                self.send_error(503)
                return
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    (tmp_path / "dir" / "flaky.txt").write_bytes(b"eventually")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Flaky, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/dir"
    try:
        assert storage.is_remote(base)
        assert storage.read_bytes(storage.join(base, "a.txt")) == b"hello"
        assert storage.read_bytes(storage.join(base, "flaky.txt")) == b"eventually"
        assert calls.count("/dir/flaky.txt") == 3  # two 503s, then the body
        assert storage.exists(storage.join(base, "a.txt"))
        assert not storage.exists(storage.join(base, "missing.txt"))
        assert storage.stat(storage.join(base, "a.txt")).size == 5
        with pytest.raises(FileNotFoundError, match="missing.txt"):
            storage.read_bytes(storage.join(base, "missing.txt"))
        target = storage.download(storage.join(base, "a.txt"), tmp_path / "got" / "a.txt")
        assert target.read_bytes() == b"hello"
        with pytest.raises(PermissionError):
            storage.write_bytes(storage.join(base, "new.txt"), b"x")
        with pytest.raises(OSError, match="cannot list"):
            storage.list_files(base)
    finally:
        server.shutdown()
