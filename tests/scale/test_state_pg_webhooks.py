"""The webhook tests (outbox, deliveries, retries, endpoint admin) again, with the state
store on PostgreSQL: their settings (tests/webhooks/support.make_settings) get this
test's database as ``[state] url``. Collected here, they get these fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from billing_batch.config.settings import Settings
from tests.webhooks import support
from tests.webhooks.conftest import _secrets, receiver  # noqa: F401 (fixtures)
from tests.webhooks.test_admin import *  # noqa: F403
from tests.webhooks.test_delivery import *  # noqa: F403
from tests.webhooks.test_outbox import *  # noqa: F403
from tests.webhooks.test_retries import *  # noqa: F403

pytestmark = pytest.mark.scale


@pytest.fixture(autouse=True)
def _state_on_postgres(state_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real = support.load_settings

    def load(*args: Any, env: dict[str, str] | None = None, **kw: Any) -> Settings:
        return real(*args, env={**(env or {}), "BILLING_STATE_URL": state_url}, **kw)

    monkeypatch.setattr(support, "load_settings", load)
    yield


# its crashing subprocess loads settings from an explicit environment (no state URL):
# it would write another store than the test reads
del test_a_crash_after_the_http_call_redelivers_once_with_the_same_id  # noqa: F821
