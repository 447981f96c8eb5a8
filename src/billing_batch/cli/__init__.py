"""``billing-batch``: the command line. Argument parsing and printing only.

Each domain registers its subcommands from its own module (``cli/ingest.py``, ...);
every command prints JSON (or a table) on stdout, errors on stderr, and exits non-zero
on failure: 2 for bad input, 3 for a lock held by another process, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .._core.errors import BillingError, InputError, LockedError, NotFoundError
from . import _registry

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_LOCKED = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="billing-batch",
        description="Usage metering and invoicing: ingest usage logs, roll them up, "
        "invoice, charge, and deliver webhooks.",
    )
    parser.add_argument(
        "--config",
        help="TOML settings file (default: $BILLING_CONFIG or $BILLING_HOME/billing.toml)",
    )
    parser.add_argument("--home", help="data root (default: $BILLING_HOME or ./billing-data)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _registry.registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..storage import mirror

    before = mirror.marker()
    code = _run(args)
    return _mirror_changes(args.command, code, before)


def _mirror_changes(command: str, code: int, before: dict[str, int]) -> int:
    """The lake's copy of the state, brought up to date when this command changed the
    state (the one place the CLI mirrors: storage.mirror); a failure to copy is said and
    changes nothing else (the nightly copies again)."""
    from ..storage import mirror

    try:
        mirror.flush(since=before, reason=f"billing-batch {command}")
    except BillingError as exc:
        print(
            f"billing-batch: warning: the lake's copy of the state is stale: {exc}", file=sys.stderr
        )
    return code


def _run(args: argparse.Namespace) -> int:
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except LockedError as exc:
        print(f"billing-batch: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except (InputError, NotFoundError) as exc:
        print(f"billing-batch: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except BillingError as exc:
        print(f"billing-batch: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("billing-batch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
