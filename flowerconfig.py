"""Flower's options, read by `celery -A worker flower` from this file in the working directory.

Basic auth comes from `FLOWER_BASIC_AUTH` (`user:password`, comma-separate several) through the
one `Settings` object, so a value in `.env` works too. Flower refuses its HTTP API without
authentication, and its pages show task arguments (article bodies), so it does not start without.
"""

from __future__ import annotations

import sys

from worker.runtime.settings import get_settings

_auth = get_settings().flower_basic_auth
if not _auth or ":" not in _auth:
    sys.exit("error: set FLOWER_BASIC_AUTH=user:password before starting Flower")

basic_auth = [pair.strip() for pair in _auth.split(",") if pair.strip()]
# Flower keeps task history in memory; bound it.
max_tasks = 10000
# Workers start with task events off; Flower turns them on every few seconds while it runs
# (Flower's default, stated here because the worker settings rely on it).
enable_events = True
