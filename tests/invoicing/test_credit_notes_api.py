"""``/v1/billing/credit_notes`` through the real app: admin only, exact decimals in and
out, refusals with the error format."""

from __future__ import annotations

from pathlib import Path

from billing_batch.api import create_app
from billing_batch.config.settings import Settings
from billing_batch.invoicing.service import get_invoice
from tests.api.test_api import KEY_A, AppClient, with_keys
from tests.invoicing.test_credit_notes import _seed_invoice


def test_issue_get_list_over_http(settings: Settings, tmp_path: Path) -> None:
    inv_id = _seed_invoice(settings, tmp_path)
    client = AppClient(create_app(with_keys(settings), mirror=False))
    try:
        body = (
            b'{"invoiceId": "INV-2024-000001", "reason": "other", '
            b'"lines": [{"line": 2, "amount": 12.34}]}'
        )
        refused = client.post("/v1/billing/credit_notes", content=body, key=KEY_A)
        assert refused.status_code == 403
        created = client.post("/v1/billing/credit_notes", content=body)
        assert created.status_code == 201, created.text
        assert '"subtotal":12.34' in created.text.replace(" ", "")  # exact, never a float
        note = created.json()
        # numbered in the year of issue (now, over HTTP)
        assert note["number"].startswith("CN-") and note["settlement"] == "amount_due"
        assert str(get_invoice(settings, inv_id).due) == "536.43"  # 550 - 13.57
        got = client.get(f"/v1/billing/credit_notes/{note['number']}")
        assert got.status_code == 200 and got.json()["id"] == note["id"]
        listed = client.get(f"/v1/billing/credit_notes?invoiceId={inv_id}").json()
        assert [n["id"] for n in listed["data"]] == [note["id"]]
        for bad, code in [
            (b"{not json", 400),
            (b"[]", 400),
            (b'{"invoiceId": "INV-2024-000001", "reason": "nope"}', 400),
            (b'{"invoiceId": "INV-2024-000001", "reason": "other", "amount": 1e3}', 400),
            (b'{"invoiceId": "INV-2099-000001", "reason": "other"}', 404),
        ]:
            answer = client.post("/v1/billing/credit_notes", content=bad)
            assert answer.status_code == code, (bad, answer.text)
            assert "code" in answer.json()["error"]
        assert client.get("/v1/billing/credit_notes/CN-1999-000009").status_code == 404
    finally:
        client.close()
