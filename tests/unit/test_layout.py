"""The layout's rules, checked two ways: statically (no module imports a layer above it) and in a
fresh interpreter (importing the client loads no database, task or runtime code, validates no
database setting and creates no file)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.processes import ROOT

pytestmark = pytest.mark.unit

# Layer -> the top-level packages (or package prefixes) it must never import.
FORBIDDEN = {
    "client/articles_client": ("worker", "tasks", "db", "celeryconfig", "sqlalchemy", "asyncpg"),
    "db": ("worker", "tasks", "celeryconfig"),
    "tasks": ("worker.cli",),
    "worker/runtime": ("worker.cli",),
}


# The outbox writes in the service's own SQLAlchemy session: only it (the `outbox` extra) and the
# command that prints its DDL may import SQLAlchemy; the producer never does.
ALLOWED = {
    "client/articles_client/outbox.py": ("sqlalchemy",),
    "client/articles_client/cli.py": ("sqlalchemy",),
}


# Parsed in a fresh interpreter: CPython 3.11's AST construction keeps its recursion depth per
# interpreter, not per thread, so a thread left running by an earlier test that compiles at the
# same moment makes `ast.parse` raise "SystemError: AST constructor recursion depth mismatch"
# (python/cpython#106905; seen once in CI).
_LIST_IMPORTS = """
import ast, json, sys
out = {}
for path in sys.argv[1:]:
    names = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    out[path] = sorted(names)
print(json.dumps(out))
"""


def _imports(paths: list[Path]) -> dict[Path, set[str]]:
    """The absolute imports of each file."""
    run = subprocess.run(
        [sys.executable, "-c", _LIST_IMPORTS, *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
    )
    return {Path(path): set(names) for path, names in json.loads(run.stdout).items()}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_the_layers_above_it(layer: str) -> None:
    offences = []
    for path, names in sorted(_imports(sorted((ROOT / layer).rglob("*.py"))).items()):
        for name in sorted(names):
            allowed = ALLOWED.get(str(path.relative_to(ROOT)), ())
            for banned in FORBIDDEN[layer]:
                if banned in allowed:
                    continue
                if name == banned or name.startswith(banned + "."):
                    offences.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offences == []


def _fresh(code: str, cwd: Path, env: dict[str, str]) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


PROBE = """
    import json, sys
    import {module}
    heavy = {{"sqlalchemy", "asyncpg", "aiosqlite", "alembic", "tasks", "db", "flower"}}
    loaded = sorted(
        m for m in sys.modules
        if m.split(".")[0] in heavy or m.startswith(("worker.runtime", "worker.cli"))
        or "celeryconfig" in m
    )
    print(json.dumps({{"loaded": loaded}}))
"""


@pytest.mark.parametrize("module", ["articles_client.producer", "worker.producer", "worker"])
def test_importing_the_client_is_light(module: str, tmp_path: Path) -> None:
    # An empty directory and an environment a service might have: a psycopg-style DATABASE_URL
    # the worker would refuse, and no broker configured yet.
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "DATABASE_URL": "postgresql://x/y"}
    report = _fresh(PROBE.format(module=module), tmp_path, env)
    assert report == {"loaded": []}
    assert list(tmp_path.iterdir()) == []  # no ./var/, no SQLite file


def test_importing_the_database_layer_loads_no_worker_code(tmp_path: Path) -> None:
    code = """
        import json, sys
        import db.engine, db.errors, db.migrate, db.models, db.queries
        print(json.dumps({"loaded": sorted(
            m for m in sys.modules if m.split(".")[0] in {"worker", "tasks"}
        )}))
    """
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    assert _fresh(code, tmp_path, env) == {"loaded": []}
