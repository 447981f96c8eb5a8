#!/usr/bin/env bash
# The demo: a sample month of usage logs, ingested into the lake, summarised.
set -euo pipefail
BB="${BB:-.venv/bin/billing-batch}"
export BILLING_HOME="${BILLING_HOME:-$PWD/billing-data}"
echo "== billing-batch demo in $BILLING_HOME"
"$BB" sample --month 2024-01 --workspaces 50 --events 1000000 >/dev/null
"$BB" ingest
