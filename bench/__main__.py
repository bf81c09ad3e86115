"""`python -m bench` (`make bench`): measure the bridges and the pipeline on the real servers.

The environment for this process and its workers is set before any project module is imported:
settings are read once, at first use.
"""

from __future__ import annotations

import os
import sys

from bench.config import load


def main() -> int:
    cfg = load()
    os.environ.update(cfg.worker_env("loop"))
    from bench.runner import run

    run(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
