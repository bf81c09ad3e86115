"""articles.ingest_task_id: a redelivered ingest message stores nothing new

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("articles") as batch:
        batch.add_column(sa.Column("ingest_task_id", sa.String(length=64), nullable=True))
        batch.create_unique_constraint(op.f("uq_articles_ingest_task_id"), ["ingest_task_id"])


def downgrade() -> None:
    with op.batch_alter_table("articles") as batch:
        batch.drop_constraint(op.f("uq_articles_ingest_task_id"), type_="unique")
        batch.drop_column("ingest_task_id")
