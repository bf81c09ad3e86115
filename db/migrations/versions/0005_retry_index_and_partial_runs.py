"""articles retry index; pipeline runs may end `partial` (their time budget ran out)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 11:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RETRY_PREDICATE = "attempts > 0 AND status IN ('pending', 'processing')"
OLD_RUN_STATUSES = "status IN ('running', 'succeeded', 'failed', 'abandoned')"
NEW_RUN_STATUSES = "status IN ('running', 'succeeded', 'partial', 'failed', 'abandoned')"


def upgrade() -> None:
    op.create_index(
        "ix_articles_retry",
        "articles",
        ["attempts", "id"],
        unique=False,
        postgresql_where=sa.text(RETRY_PREDICATE),
        sqlite_where=sa.text(RETRY_PREDICATE),
    )
    _run_statuses(NEW_RUN_STATUSES)


def downgrade() -> None:
    op.execute("UPDATE pipeline_runs SET status = 'succeeded' WHERE status = 'partial'")
    _run_statuses(OLD_RUN_STATUSES)
    op.drop_index("ix_articles_retry", table_name="articles")


def _run_statuses(check: str) -> None:
    with op.batch_alter_table("pipeline_runs") as batch:
        batch.drop_constraint(op.f("ck_pipeline_runs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_pipeline_runs_status"), check)
