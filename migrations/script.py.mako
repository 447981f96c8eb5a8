"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
"""

from __future__ import annotations

from alembic import op

from billing_batch.storage.schema import run_script

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    run_script(bind, "migrations/NNN_name")  # sql/state/migrations/NNN_<name>.sql
    run_script(bind, "schema")


def downgrade() -> None:
    raise NotImplementedError("the state store only moves forward")
