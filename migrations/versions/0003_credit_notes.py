"""Migration 2 -> 3: credit notes, the customer balance, refunds, Stripe's events,
disputes, reconciliation; invoices get amount_due (sql/state/migrations/
003_credit_notes.sql). A store created at a later head has them from schema.sql and is
stamped, never migrated.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_batch.storage.schema import run_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


#: The invoices' new columns (TEXT: amounts are exact decimal strings).
NEW_COLUMNS = ("amount_due", "dispute_id", "dispute_status")


def upgrade() -> None:
    bind = op.get_bind()
    have = {c["name"] for c in sa.inspect(bind).get_columns("invoices")}
    for column in NEW_COLUMNS:
        if column not in have:
            bind.exec_driver_sql(f"ALTER TABLE invoices ADD COLUMN {column} TEXT")
    run_script(bind, "migrations/003_credit_notes")
    run_script(bind, "schema")


def downgrade() -> None:
    raise NotImplementedError("the state store only moves forward")
