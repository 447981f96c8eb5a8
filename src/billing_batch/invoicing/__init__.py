"""Invoicing: the lifecycle of an invoice and its refusals, numbering, the nightly's
planner, the billing ledger, explain and the audit.

* :mod:`.service`: the verbs (create, finalize, void, mark overdue, get, list, the
  nightly's invoicing of closed periods);
* :mod:`.model`: the invoice, its statuses and allowed moves;
* :mod:`.lifecycle`: each move inside a state transaction, with its history and event;
* :mod:`.rate`: positions priced by the rules of :mod:`billing_batch.rating`;
* :mod:`.numbering`: gap-free numbers; :mod:`.store`: the invoice tables;
* :mod:`.positions`, :mod:`.ledger`, :mod:`.planner`: what is billed, what is owed, and
  which invoices a run creates;
* :mod:`.publish`: the JSON and PDF files; :mod:`.explain`; :mod:`.audit`.
"""

from __future__ import annotations

__all__: list[str] = []
