"""`from worker import outbox`: the client's transactional outbox, re-exported (one copy).

Importing it needs SQLAlchemy (the worker always has it; a service installs the client's
`outbox` extra). `import worker` alone does not load it.
"""

from articles_client.outbox import (
    CHANNEL,
    OPTIONS_KEYWORD,
    TABLE_NAME,
    PublishOptions,
    enqueue,
    enqueue_async,
    metadata,
    outbox_table,
)

__all__ = [
    "CHANNEL",
    "OPTIONS_KEYWORD",
    "TABLE_NAME",
    "PublishOptions",
    "enqueue",
    "enqueue_async",
    "metadata",
    "outbox_table",
]
