"""The dead-letter store: where every job that cannot succeed ends (docs/design.md section 2).

`store.py` holds the interface, `redis_store.py` and `sqlite_store.py` two stores behind it,
`factory.py` the choice, `entry.py` what an entry holds. `hooks.py` (task signals) and
`consumer.py` (messages that are not a runnable job) put jobs there; `replay.py` sends them back.
"""
