"""Database layer: engine factory, typed models, query functions and Alembic migrations."""
