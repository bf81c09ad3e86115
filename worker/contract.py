"""`worker.contract`: the client's task contract, re-exported (one copy of the code)."""

from articles_client.contract import *  # noqa: F403
from articles_client.contract import __all__ as __all__
