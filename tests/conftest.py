"""Shared pytest fixtures."""

from __future__ import annotations

# ============================================================================
# S3 test server: moto's server mode on loopback, reached over real HTTP
# through boto3's standard configuration (AWS_ENDPOINT_URL).
# Fixtures: s3_server, s3_admin (session), s3_bucket (function).
# Keep other fixtures outside this block.
# ============================================================================
import uuid
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from colorization import storage


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Starts one moto S3 server for the session and yields its endpoint URL."""
    # Bind loopback explicitly: moto's default 0.0.0.0 would expose the server.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_admin(s3_server: str):
    """A boto3 client for arranging test state on the server, independent of the environment."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return session.client("s3", endpoint_url=s3_server)


@pytest.fixture
def s3_bucket(
    s3_server: str,
    s3_admin,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """Points the standard AWS configuration at the test server; yields a fresh s3://bucket."""
    # Isolate from the developer's ~/.aws and environment so nothing real is reached.
    no_aws = tmp_path_factory.mktemp("aws") / "missing"
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(no_aws))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(no_aws))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    storage.reset_clients()
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    s3_admin.create_bucket(Bucket=bucket)
    yield f"s3://{bucket}"
    storage.reset_clients()  # the cached client points at the test server


# ============================================================================
# End of S3 test server block.
# ============================================================================


# ============================================================================
# Pipeline fixtures: an isolated COLORIZATION_HOME per test, the committed fixture photos,
# and a tiny prepared dataset and model shared by the session.
# ============================================================================
from pathlib import Path  # noqa: E402

from support import FIXTURE_PHOTOS, TINY_GENERATOR, TINY_IMAGE_SIZE  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own storage root and shard cache."""
    home = tmp_path / "home"
    monkeypatch.setenv("COLORIZATION_HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return home


@pytest.fixture(scope="session")
def fixture_photos() -> Path:
    """The committed folder of 40 real colour photos."""
    return FIXTURE_PHOTOS


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The fixture photos prepared at 32 px: 32 train / 8 val images, 3 shards per split."""
    from colorization.shards import PrepareConfig, prepare_dataset

    out = tmp_path_factory.mktemp("tiny-dataset") / "snapshot"
    return prepare_dataset(PrepareConfig(source=str(FIXTURE_PHOTOS), output=str(out),
                                         image_size=TINY_IMAGE_SIZE, shard_size=12))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: str) -> tuple[str, str]:
    """A tiny generator pretrained for 2 epochs: (models root, model id)."""
    from colorization.train import TrainConfig, train_stage

    root = tmp_path_factory.mktemp("tiny-model")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLORIZATION_HOME", str(root))
        result = train_stage(TrainConfig(generator=TINY_GENERATOR, epochs=2, batch_size=8),
                             dataset=tiny_dataset)
    return str(root / "models"), result["model_id"]


# ============================================================================
# FiftyOne (issue 10): one database for the session, in a tmp dir, analytics off.
# Starting its MongoDB and importing fiftyone cost ~15 s: keep FiftyOne tests few.
# ============================================================================
import os  # noqa: E402

FIFTYONE_ENV_NAMES = ("FIFTYONE_DATABASE_DIR", "FIFTYONE_DATABASE_URI", "HOME",
                      "FIFTYONE_DO_NOT_TRACK", "FIFTYONE_DATABASE_VALIDATION",
                      "FIFTYONE_SHOW_PROGRESS_BARS")


@pytest.fixture(scope="session")
def fiftyone_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Points FiftyOne (this process and the CLI processes tests start) at a fresh database
    under a tmp HOME; yields the variables set."""
    base = tmp_path_factory.mktemp("fiftyone")
    saved = {name: os.environ.get(name) for name in FIFTYONE_ENV_NAMES}
    values = {"FIFTYONE_DATABASE_DIR": str(base / "db"), "HOME": str(base / "home"),
              "FIFTYONE_DO_NOT_TRACK": "true", "FIFTYONE_DATABASE_VALIDATION": "false",
              "FIFTYONE_SHOW_PROGRESS_BARS": "false"}
    os.environ.pop("FIFTYONE_DATABASE_URI", None)
    os.environ.update(values)
    try:
        yield values
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# ============================================================================
# Issue 9: a tiny model trained until it beats leaving the photos gray.
# ============================================================================
@pytest.fixture(scope="session")
def better_than_gray(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: str
                     ) -> tuple[str, str]:
    """The tiny generator trained 8 epochs at lr 1e-3 (3 s): mean CIEDE2000 about 9.6 on the
    tiny snapshot's val split, against 9.9 for gray: (models root, model id)."""
    from colorization.train import TrainConfig, train_stage

    root = tmp_path_factory.mktemp("better-than-gray")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLORIZATION_HOME", str(root))
        result = train_stage(TrainConfig(generator=TINY_GENERATOR, epochs=8, batch_size=4,
                                         lr=1e-3, device="cpu", checkpoint_every=0),
                             dataset=tiny_dataset)
    return str(root / "models"), result["model_id"]
