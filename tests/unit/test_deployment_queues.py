"""The default deployment's queue split is written in three places (the contract, the Makefile and
docker-compose.yml); they must agree, or a queue would have no consumer."""

from __future__ import annotations

import re

import pytest

from articles_client import contract
from tests.support.processes import ROOT

pytestmark = pytest.mark.unit


def _sets(text: str) -> set[tuple[str, ...]]:
    # Every -Q argument, as written in the Makefile (make variables) or compose (a list item).
    return {
        tuple(sorted(q.split(","))) for q in re.findall(r"[\"\s](?:-Q\", \"|-Q )([\w.,$()]+)", text)
    }


def test_every_queue_has_exactly_one_kind_of_worker() -> None:
    main, pipeline = set(contract.MAIN_WORKER_QUEUES), set(contract.PIPELINE_WORKER_QUEUES)
    assert main | pipeline == set(contract.WORK_QUEUES)
    assert main.isdisjoint(pipeline)
    assert set(contract.ROUTES.values()) <= set(contract.WORK_QUEUES)


def test_makefile_and_compose_run_the_contracts_split() -> None:
    expected = {
        tuple(sorted(contract.MAIN_WORKER_QUEUES)),
        tuple(sorted(contract.PIPELINE_WORKER_QUEUES)),
    }
    makefile = (ROOT / "Makefile").read_text()
    variables = dict(re.findall(r"^(\w+_QUEUES) := (\S+)$", makefile, re.M))
    assert {tuple(sorted(v.split(","))) for v in variables.values()} == expected
    assert _sets((ROOT / "docker-compose.yml").read_text()) == expected
