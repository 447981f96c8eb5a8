"""The state store's schema: sql/state/schema.sql (every table).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from billing_batch.storage.schema import run_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script(op.get_bind(), "schema")


def downgrade() -> None:
    raise NotImplementedError("the state store only moves forward")
