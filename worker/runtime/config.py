"""The worker's Celery configuration: the project's `celeryconfig.py`, loaded by its path.

`app.config_from_object("celeryconfig")` would import whichever `celeryconfig` comes first on
`sys.path`, and the current directory comes first: a service's own file could switch on pickle or
turn off late acks. Loading our file by path, under a private name, makes that impossible.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

# The repository root in a checkout, site-packages in an installed wheel: either way the file
# sits beside the `worker` package.
CONFIG_FILE = Path(__file__).resolve().parents[2] / "celeryconfig.py"
_MODULE_NAME = "_articles_worker_celeryconfig"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, CONFIG_FILE)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the worker's Celery configuration from {CONFIG_FILE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


globals().update(
    {name: value for name, value in vars(_load()).items() if name.islower() and name[0] != "_"}
)
