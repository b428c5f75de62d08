"""infra/compose.yaml and infra/Dockerfile, checked as far as a machine without a Docker daemon
allows: the services and their wiring, files that exist, no secret in the repository, ports
on loopback only, the GPU reservation."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
# ${NAME}, ${NAME:-default}, ${NAME:?message}: compose's interpolation.
INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|TOKEN|_USER$|_USERNAME$")


def _compose() -> dict[str, Any]:
    return yaml.safe_load((INFRA / "compose.yaml").read_text())


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


def _env_example() -> dict[str, str]:
    lines = (INFRA / "env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_compose_has_the_production_services_wired_together():
    services = _compose()["services"]
    assert {"postgres", "prefect-server", "minio", "minio-buckets", "mongodb", "worker-cpu",
            "worker-gpu"} <= set(services)
    server = _environment(services["prefect-server"])
    assert server["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert "@postgres:5432/" in server["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert server["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    buckets = " ".join(services["minio-buckets"]["command"])
    assert "stack/colorization" in buckets and "stack/archive" in buckets
    pools = {}
    for name in ("worker-cpu", "worker-gpu"):
        worker = services[name]
        env = _environment(worker)
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert env["COLORIZATION_HOME"] == "s3://colorization"
        assert env["FIFTYONE_DATABASE_URI"].startswith("mongodb://")
        assert "@mongodb:27017/" in env["FIFTYONE_DATABASE_URI"]
        assert set(worker["depends_on"]) == {"prefect-server", "minio-buckets", "mongodb"}
        # Training checkpoints (~/.colorization/runs) outlive the container: runs resume.
        assert "worker-state:/home/colorization/.colorization" in worker["volumes"]
        command = worker["command"]
        pools[name] = command[command.index("--pool") + 1]
        assert worker["build"]["dockerfile"] == "infra/Dockerfile"
        assert (INFRA / worker["build"]["context"] / worker["build"]["dockerfile"]).is_file()
    # The pools prefect.yaml deploys to, one worker each.
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    assert set(pools.values()) == {d["work_pool"]["name"] for d in deployments}
    assert pools == {"worker-cpu": "colorization", "worker-gpu": "colorization-gpu"}
    assert services["worker-cpu"]["build"]["args"]["TORCH_VARIANT"] == "cpu"
    gpu = services["worker-gpu"]
    assert gpu["build"]["args"]["TORCH_VARIANT"] == "cuda"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert "devices" not in services["worker-cpu"].get("deploy", {}).get("resources", {}).get(
        "reservations", {})


def test_published_ports_bind_loopback_only():
    published = [(name, port) for name, service in _compose()["services"].items()
                 for port in service.get("ports", [])]
    assert published, "the server, MinIO and its console are published"
    for name, port in published:
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)


def test_no_credential_is_written_in_the_repository():
    """Secrets are compose interpolations of variables that infra/.env (git-ignored) sets;
    env.example names every variable and holds no secret value."""
    compose = _compose()
    used = set(INTERPOLATION.findall((INFRA / "compose.yaml").read_text()))
    for name, service in compose["services"].items():
        for key, value in _environment(service).items():
            if SECRET_NAME.search(key) and key != "POSTGRES_USER":
                assert INTERPOLATION.fullmatch(value), (name, key, value)
            # URLs with credentials: user and password are interpolations only.
            for userinfo in re.findall(r"://([^/@]*)@", value):
                assert INTERPOLATION.sub("", userinfo) == ":", (name, key, value)
    example = _env_example()
    assert used <= set(example), used - set(example)
    for key, value in example.items():
        if "PASSWORD" in key or "SECRET" in key:
            assert value == "", f"env.example must not hold a value for {key}"
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert {"infra/.env", "infra/stack.env", "infra/.stack/"} <= set(ignored)


def test_the_image_builds_cpu_and_cuda_workers_from_files_that_exist():
    dockerfile = (INFRA / "Dockerfile").read_text()
    # Every COPY source exists and is let through .dockerignore.
    sources = [shlex.split(line)[1:-1] for line in dockerfile.splitlines()
               if line.startswith("COPY ")]
    assert sources
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    for source in (s for group in sources for s in group):
        assert (ROOT / source).exists(), source
        assert source in allowed, source
    # One build argument picks the torch wheels; both values are handled, others refused.
    assert "ARG TORCH_VARIANT=cpu" in dockerfile
    assert re.search(r"cpu\) index=", dockerfile) and re.search(r"cuda\) index=", dockerfile)
    assert "exit 1" in dockerfile
    # The pinned torch pair is the Makefile's.
    makefile = (ROOT / "Makefile").read_text()
    spec = re.search(r"TORCH_SPEC \?= (.+)", makefile)
    assert spec is not None and f'ARG TORCH_SPEC="{spec.group(1).strip()}"' in dockerfile
    assert "USER colorization" in dockerfile
    # The volume's mount point exists, owned by that user, so the volume starts writable.
    assert "install -d -o colorization -g colorization /home/colorization/.colorization" \
        in dockerfile
