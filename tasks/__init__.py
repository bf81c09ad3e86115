"""Celery task modules. Task bodies are thin: validate the payload, cross the bridge once."""
