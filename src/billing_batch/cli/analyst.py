"""``billing-batch analyst-init``: the analysts' read-only session as a SQL file."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..storage.analyst import analyst_init_sql
from ._common import settings_from


def register(sub: argparse._SubParsersAction[Any]) -> None:
    a = sub.add_parser(
        "analyst-init",
        help="print the SQL that opens the lake read-only in any DuckDB 1.4 session",
        description="Print the statements that attach this home's lake read-only in a "
        "DuckDB 1.4 session and then close file access, ATTACH, INSTALL/LOAD and SET "
        "(e.g. billing-batch analyst-init > billing.sql, then .read billing.sql in the "
        "DuckDB CLI). See docs/analysts.md for what such a session can still do.",
    )
    a.set_defaults(handler=_analyst_init)


def _analyst_init(args: argparse.Namespace) -> int:
    sys.stdout.write(analyst_init_sql(settings_from(args)))
    sys.stdout.flush()
    return 0
