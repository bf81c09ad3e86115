"""The `articles` command: demo, seeding, ingest, pipeline runs, status and database upgrades."""
