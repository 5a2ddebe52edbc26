"""The container files: hadolint-clean Dockerfiles, a Compose file Compose accepts, the profiles it promises."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from app.api.http_protocol import SERVER_DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile*"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_hadolint_clean(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cpu_image_runs_as_non_root_with_a_readiness_healthcheck() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim AS build" in text and text.count("FROM ") == 2  # multi-stage
    assert "USER 10001" in text and "HEALTHCHECK" in text and "/ready" in text
    assert ".[cpu]" in text and "train" not in text  # serving dependencies only


def test_compose_has_the_promised_services_and_profiles() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "profiles" not in services["api"]  # the default
    assert services["api-gpu"]["profiles"] == ["gpu"]
    device = services["api-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["capabilities"] == ["gpu"]
    scaled = [name for name, s in services.items() if s.get("profiles") == ["scale"]]
    assert "nginx" in scaled and len(scaled) >= 3
    assert all(k.startswith(("CHARSERVE_", "UVICORN_", "PORT")) for k in services["api"]["environment"])


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_compose_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "--profile", "gpu", "--profile", "scale",
         "config", "-q"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_every_start_of_the_server_bounds_its_shutdown_the_same_way() -> None:
    """uvicorn reads UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN: the Makefile, both images and Compose set that one variable,
    and Compose waits longer than it before killing the container."""
    makefile = (ROOT / "Makefile").read_text()
    dockerfiles = [(ROOT / "docker" / name).read_text() for name in ("Dockerfile", "Dockerfile.gpu")]
    for name, value in SERVER_DEFAULTS.items():  # what `charserve serve` uses when the variables are unset
        assert f"export {name} ?= {value}" in makefile
        for text in dockerfiles:
            assert f"{name}={value}" in text
    for text in dockerfiles:
        assert "--timeout-graceful-shutdown" not in text
    api = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["api"]
    assert api["environment"]["UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN"] == "${UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN:-30}"
    assert int(api["stop_grace_period"].rstrip("s")) > 30


def test_compose_listens_on_loopback_unless_told_otherwise() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("api", "api-gpu", "replica-1", "replica-2"):
        assert services[name]["environment"]["UVICORN_HOST"] == "${CHARSERVE_BIND:-127.0.0.1}", name
    assert "listen 127.0.0.1:8080;" in (ROOT / "docker" / "nginx.conf").read_text()
