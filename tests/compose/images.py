"""The images the compose layer runs, by the official names docker-compose.yml and Dockerfile use.

Where no registry is reachable these names are tags of the stand-ins of docker/standins, made by
its build.sh in this engine only.
"""

from __future__ import annotations

from tests.compose.stack import ROOT

BUILD_STANDINS = ROOT / "docker" / "standins" / "build.sh"
WORKER_IMAGE = "articles-worker:latest"  # what docker-compose.yml builds from the Dockerfile
POSTGRES_IMAGE = "postgres:16-alpine"
REDIS_IMAGE = "redis:7-alpine"
# Used only by the pytest-celery layer: build.sh lists it among its EXTRA_REFS.
RABBITMQ_IMAGE = "rabbitmq:3-management"
