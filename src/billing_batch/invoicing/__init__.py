"""Invoicing: the billing ledger, billing positions (lake vs ledger), the planner of a
run's invoices, and the audit. The invoice lifecycle itself is in
:mod:`billing_batch.invoices` for now."""

from __future__ import annotations

__all__: list[str] = []
