"""Alembic's environment for the ``alembic`` command line (``alembic.ini``): the state
store of the billing-batch settings (``BILLING_HOME``, ``BILLING_CONFIG``,
``BILLING_STATE_URL``). billing-batch itself upgrades at open
(``billing_batch.storage.schema.upgrade``) without this file."""

from __future__ import annotations

from alembic import context

from billing_batch.config.settings import load_settings
from billing_batch.storage import state

with state.opened(load_settings()) as con:  # opening upgrades to head under the lock
    context.configure(connection=con.sa, target_metadata=None, transactional_ddl=False)
    with state.transaction(con):
        context.run_migrations()
