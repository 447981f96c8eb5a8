"""``billing-batch serve-api`` and ``billing-batch api-key create``."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from .._core.errors import InputError
from ._common import print_json, settings_from


def register(sub: argparse._SubParsersAction[Any]) -> None:
    s = sub.add_parser("serve-api", help="serve the HTTP API (default 127.0.0.1:8000)")
    s.add_argument("--host", help="interface to bind (default: api.host, 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default: api.port, 8000)")
    s.add_argument(
        "--no-mirror",
        action="store_true",
        help="do not copy state changes into the lake after each call (the nightly run does)",
    )
    s.set_defaults(handler=_serve)

    k = sub.add_parser("api-key", help="API keys for the HTTP API")
    ksub = k.add_subparsers(dest="api_key_command", metavar="ACTION", required=True)
    c = ksub.add_parser(
        "create",
        help="print a new random key (once) and the billing.toml entry with its hash",
    )
    who = c.add_mutually_exclusive_group(required=True)
    who.add_argument("--workspace", help="the workspace the key acts for")
    who.add_argument("--admin", action="store_true", help="a finance/admin key (sees all)")
    c.add_argument("--name", default="", help="a label for the key (shown in logs)")
    c.set_defaults(handler=_create_key)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..api import create_app

    settings = settings_from(args)
    app = create_app(settings, mirror=not args.no_mirror)
    if not settings.api.keys:
        print(
            "billing-batch: warning: no [[api.keys]] configured: every call will be refused "
            "(create one with `billing-batch api-key create`)",
            file=sys.stderr,
        )
    host = args.host or settings.api.host
    port = settings.api.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be between 0 and 65535, got {port}")
    uvicorn.run(app, host=host, port=port, ws="none", log_level="info")
    return 0


def _toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON string escapes are TOML's too


def _create_key(args: argparse.Namespace) -> int:
    from ..api.auth import hash_key, new_key
    from ..api.models import WORKSPACE_PATTERN

    workspace: str | None = args.workspace
    if workspace is not None and not re.fullmatch(WORKSPACE_PATTERN, workspace):
        raise InputError(
            f"invalid workspace id {workspace!r}: 1-64 letters, digits, '_', '-' or '.'"
        )
    key = new_key()
    digest = hash_key(key)
    entry = ["[[api.keys]]", f"hash = {_toml_string(digest)}"]
    if workspace is not None:
        entry.append(f"workspace = {_toml_string(workspace)}")
    if args.name:
        entry.append(f"name = {_toml_string(args.name)}")
    toml = "\n".join(entry)
    print_json(
        {"key": key, "hash": digest, "workspace": workspace, "name": args.name, "toml": toml}
    )
    print(
        f"billing-batch: the key is shown once; add this to billing.toml:\n\n{toml}\n",
        file=sys.stderr,
    )
    return 0
