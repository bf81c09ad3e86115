"""`from worker import outbox`: the client's transactional outbox, re-exported (one copy).

Importing it needs SQLAlchemy (the worker always has it; a service installs the client's
`outbox` extra). `import worker` alone does not load it.
"""

from articles_client.outbox import *  # noqa: F403
from articles_client.outbox import __all__ as __all__
