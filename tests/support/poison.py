"""Test-only hook, loaded into a worker through EXTRA_TASK_MODULES=tests.support.poison.

It wraps the article rules so that processing an article whose body contains `MARKER` kills the
process at once (SIGKILL, as an out-of-memory kill or a segfault in a C extension would): a
poison article. Every other article is processed normally.
"""

from __future__ import annotations

import os
import signal
from typing import Final

from tasks import analysis

MARKER: Final = "POISON-PILL"

_analyse = analysis.analyse


def _analyse_or_die(body: str) -> analysis.Analysis:
    if MARKER in body:
        os.kill(os.getpid(), signal.SIGKILL)
    return _analyse(body)


analysis.analyse = _analyse_or_die
