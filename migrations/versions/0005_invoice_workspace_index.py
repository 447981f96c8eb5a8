"""Migration 4 -> 5: an index on invoices by (workspace, period start), which the
overlap check of every finalization uses (sql/state/migrations/
005_invoice_workspace_index.sql). A store created at a later head has it from schema.sql
and is stamped, never migrated.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

from billing_batch.storage.schema import run_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    run_script(bind, "migrations/005_invoice_workspace_index")
    run_script(bind, "schema")


def downgrade() -> None:
    raise NotImplementedError("the state store only moves forward")
