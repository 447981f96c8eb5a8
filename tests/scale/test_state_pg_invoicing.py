"""The invoicing, ledger, audit and subscriptions tests again, with the state store on
PostgreSQL (collected here, they get this folder's ``settings``: a fresh database)."""

from __future__ import annotations

import pytest

from tests.invoicing.test_audit import *  # noqa: F403
from tests.invoicing.test_ledger import *  # noqa: F403
from tests.invoicing.test_service import *  # noqa: F403
from tests.subscriptions.test_service import *  # noqa: F403

pytestmark = pytest.mark.scale

# reads its rows back in SQLite's rowid order: SQLite-only by construction
del test_a_recorded_audit_reads_back  # noqa: F821
