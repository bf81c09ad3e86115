"""The dead-letter store: where every job that cannot succeed ends (docs/design.md section 2).

`store.py` holds the interface, `redis_store.py`, `sqlite_store.py` and `amqp_store.py` (a
RabbitMQ queue) three stores behind it,
`factory.py` the choice, `entry.py` what an entry holds. `hooks.py` (task signals) and
`consumer.py` (messages that are not a runnable job) put jobs there; `replay.py` sends them back.
"""
