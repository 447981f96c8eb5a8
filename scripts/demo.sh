#!/usr/bin/env bash
# The demo (README's first command): close a sample month end to end.
#   1. a sample month of usage logs into landing/ (50 workspaces, ~1M events, with
#      retries, id-less lines and a few bad lines);
#   2. the nightly flow for 2024-02-01, the day after January ends: ingest, rollup,
#      invoices (JSON + PDF), payments (skipped without STRIPE_API_KEY), overdue,
#      webhooks, run summary;
#   3. where the PDFs and the analysts' catalog are.
set -euo pipefail
BB="${BB:-.venv/bin/billing-batch}"
export BILLING_HOME="${BILLING_HOME:-$PWD/billing-data}"
RUN_DATE="${RUN_DATE:-2024-02-01}"
echo "== billing-batch demo in $BILLING_HOME"
if [ -n "$(ls -A "$BILLING_HOME/landing" 2>/dev/null)" ]; then
  echo "== landing/ already holds logs: reusing them (the rerun changes nothing)"
else
  "$BB" sample --month 2024-01 --workspaces 50 --events 1000000
fi
status=0
"$BB" run --date "$RUN_DATE" || status=$?
pdfs=$(ls "$BILLING_HOME"/invoices/*.pdf 2>/dev/null | wc -l)
cat <<MSG

== done (exit $status)
Invoice PDFs ($pdfs):   $BILLING_HOME/invoices/
Run summaries:         $BILLING_HOME/runs/
Analysts' catalog:     $BILLING_HOME/lake/catalog.sqlite   (docs/analysts.md)
  try:  $BB sql "SELECT workspace_id, number, total, status FROM invoices ORDER BY total DESC LIMIT 5"
  or, from any DuckDB 1.4 session, after:
        $BB analyst-init > billing-session.sql     (then .read billing-session.sql)
MSG
exit $status
