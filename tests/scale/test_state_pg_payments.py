"""The payments tests again, with the state store on PostgreSQL: the session's invoice
template (built on SQLite by tests/payments/conftest.py) is copied into a template
database once (storage.transfer.copy_state), and each test gets a database created
from it. Collected here, they get these fixtures."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from billing_batch.config.settings import Settings, load_settings
from billing_batch.storage.transfer import copy_state
from tests.payments.support import KEY, payments_env
from tests.payments.test_attempts import *  # noqa: F403
from tests.payments.test_charging import *  # noqa: F403
from tests.payments.test_customers import *  # noqa: F403
from tests.payments.test_dunning import *  # noqa: F403
from tests.payments.test_outcomes import *  # noqa: F403
from tests.postgres_harness import PgServer

pytestmark = pytest.mark.scale


@pytest.fixture(scope="module")
def pg_template(pg_server: PgServer, invoice_template: Path) -> Iterator[str]:
    """A database holding the template's state (a PostgreSQL template database)."""
    name = f"tmpl_{uuid.uuid4().hex[:12]}"
    pg_server.admin(f"CREATE DATABASE {name}")
    source = load_settings(env=payments_env(invoice_template, invoice_template / "lake"))
    target = load_settings(
        env={"BILLING_HOME": str(invoice_template), "BILLING_STATE_URL": pg_server.url(name)}
    )
    copy_state(source, target)
    yield name
    pg_server.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def psettings(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    invoice_template: Path,
    pg_server: PgServer,
    pg_template: str,
) -> Iterator[Settings]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.admin(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    env = {
        **payments_env(home, invoice_template / "lake"),
        "BILLING_STATE_URL": pg_server.url(name),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("STRIPE_API_KEY", KEY)
    monkeypatch.delenv("STRIPE_API_BASE", raising=False)
    yield load_settings(env=env)
    pg_server.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# expects sqlite3's own IntegrityError type: SQLite-only by construction (on PostgreSQL
# the same UNIQUE constraint raises psycopg's UniqueViolation)
del test_an_attempt_is_written_pending_then_completed  # noqa: F821
