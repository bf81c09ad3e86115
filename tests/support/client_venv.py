"""A fresh venv with only the client's wheel (and what it depends on), plus any extra packages a
test's service needs: what another team's service installs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.processes import ROOT


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command; fail with its output if it fails."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done


def build_client_venv(where: Path, *extra: str) -> Path:
    """Build the client wheel from client/ into `where` and install it (and `extra`) in a venv."""
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(where), "./client"],
        cwd=ROOT)  # fmt: skip
    (wheel,) = where.glob("articles_worker_client-*.whl")
    venv = where / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
    run([*pip, str(wheel), *extra])
    return venv
