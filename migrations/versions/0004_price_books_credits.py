"""Migration 3 -> 4: stored price-book versions, prepaid credit grants and their ledger;
the live-period index leaves out debit invoices (sql/state/migrations/
004_price_books_credits.sql). A store created at a later head has them from schema.sql
and is stamped, never migrated.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

from billing_batch.storage.schema import run_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    run_script(bind, "migrations/004_price_books_credits")
    run_script(bind, "schema")


def downgrade() -> None:
    raise NotImplementedError("the state store only moves forward")
