"""`worker.errors`: the client's exception hierarchy, re-exported (one copy of the code)."""

from articles_client.errors import *  # noqa: F403
from articles_client.errors import __all__ as __all__
