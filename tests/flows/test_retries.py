"""Task retries: only failures that can heal are retried, checked with real exceptions."""

from __future__ import annotations

import socket
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from prefect import flow, task

from colorization.shards import PrepareConfig, read_manifest
from colorization.storage import StorageError
from flows.retries import healing_retries, is_transient


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _raised(call) -> BaseException:
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        return exc
    raise AssertionError("expected an exception")


def test_network_and_store_outages_heal():
    port = _closed_port()
    refused = _raised(lambda: socket.create_connection(("127.0.0.1", port), timeout=5))
    assert isinstance(refused, ConnectionRefusedError) and is_transient(refused)
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing",
                          config=Config(retries={"total_max_attempts": 1}, connect_timeout=2))
    unreachable = _raised(client.list_buckets)
    assert isinstance(unreachable, EndpointConnectionError) and is_transient(unreachable)

    def wrapped() -> None:  # as colorization.storage reports it
        try:
            client.list_buckets()
        except EndpointConnectionError as exc:
            raise StorageError(f"s3://bucket/key: {exc}") from exc

    assert is_transient(_raised(wrapped))
    assert is_transient(TimeoutError("read timed out"))


def test_http_answers_heal_only_when_the_server_says_so():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(int(self.path.strip("/")))
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        verdicts = {code: is_transient(_raised(lambda c=code: urllib.request.urlopen(
            f"{base}/{c}", timeout=10))) for code in (503, 500, 429, 404, 403, 400)}
    finally:
        server.shutdown()
        server.server_close()
    assert verdicts == {503: True, 500: True, 429: True, 404: False, 403: False, 400: False}


def test_bad_input_never_heals(tmp_path):
    missing = _raised(lambda: read_manifest(str(tmp_path / "no-such-dataset")))
    assert isinstance(missing, FileNotFoundError) and not is_transient(missing)
    bad = _raised(lambda: PrepareConfig(source=str(tmp_path), sample_size=0).validate())
    assert isinstance(bad, ValueError) and not is_transient(bad)
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                          "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject")
    assert not is_transient(denied)
    slow = ClientError({"Error": {"Code": "SlowDown", "Message": "Reduce your request rate"},
                        "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject")
    assert is_transient(slow)

    def denied_storage() -> None:
        try:
            raise denied
        except ClientError as exc:
            raise StorageError("s3://bucket/key: S3 error AccessDenied") from exc

    assert not is_transient(_raised(denied_storage))


def test_prefect_retries_a_healing_failure_and_not_a_bad_input(prefect_api):
    calls = {"flaky": 0, "bad": 0}

    @task(**healing_retries(retries=2, backoff_s=0))
    def flaky() -> str:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise ConnectionResetError("connection reset by peer")
        return "done"

    @task(**healing_retries(retries=2, backoff_s=0))
    def bad_input() -> None:
        calls["bad"] += 1
        raise ValueError("image_size must be at least 1")

    @flow
    def both() -> str:
        result = flaky()
        bad_input()
        return result

    with pytest.raises(ValueError, match="image_size"):
        both()
    assert calls == {"flaky": 2, "bad": 1}  # retried once; never retried
