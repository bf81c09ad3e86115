"""The compose layer: this repository's Dockerfile and docker-compose.yml, run on a Docker engine.

The layer is skipped, saying why, when docker-compose is missing or no engine answers
(`.ci/run` installs and starts both). Where no registry is reachable, the official images are
replaced by the stand-ins of docker/standins, built once per machine (cached by a content hash);
set `COMPOSE_TEST_PULL=1` to let compose pull the real images instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.compose.images import BUILD_STANDINS


def engine_problem() -> str | None:
    """Why the compose layer cannot run here, or None when it can."""
    for tool in ("docker", "docker-compose"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer `docker info` within 30 s"
    if done.returncode != 0:
        return f"no Docker engine answers ({done.stderr.strip()[:300]})"
    return None


@pytest.fixture(scope="session")
def docker_engine() -> None:
    problem = engine_problem()
    if problem is not None:
        pytest.skip(
            f"compose layer skipped: {problem}. Install docker.io and docker-compose and start "
            "dockerd (.ci/run does both)."
        )


@pytest.fixture(scope="session")
def standin_images(docker_engine: None) -> str:
    """The hash of the stand-in images, built if missing; 'registry' with COMPOSE_TEST_PULL=1."""
    if os.environ.get("COMPOSE_TEST_PULL") == "1":
        return "registry"
    done = subprocess.run(
        [str(BUILD_STANDINS)],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"building the stand-in images failed (set COMPOSE_TEST_PULL=1 where a registry is "
            f"reachable):\n{done.stderr[-3000:]}",
            pytrace=False,
        )
    return done.stdout.strip()
