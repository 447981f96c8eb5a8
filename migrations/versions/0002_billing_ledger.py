"""Migration 1 -> 2: the billing ledger replaces billed_usage
(sql/state/migrations/002_billing_ledger.sql, SQLite-only: a store at version 1 was
always SQLite); a store created at 0001 has no billed_usage and needs nothing.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

from billing_batch.storage.schema import has_table, run_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if has_table(bind, "billed_usage"):
        run_script(bind, "migrations/002_billing_ledger")
    run_script(bind, "schema")


def downgrade() -> None:
    raise NotImplementedError("the state store only moves forward")
