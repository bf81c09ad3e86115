"""The Celery runtime: the app and its configuration, settings, the async bridge, and the worker
signals (lifecycle, task logs, kombu fixes). Imports nothing from `worker.cli`."""
