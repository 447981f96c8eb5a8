"""Where the CLI finds its subcommands: one ``register(subparsers)`` per domain module."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Iterator
from typing import Any

Registrar = Callable[["argparse._SubParsersAction[Any]"], None]

#: Domain modules under ``billing_batch.cli``, in the order their commands are listed.
MODULES: tuple[str, ...] = (
    "ingest",
    "usage",
    "analyst",
    "invoices",
    "credit_notes",
    "subscriptions",
    "credits",
    "simulate",
    "webhooks",
    "run",
    "audit",
    "reconcile",
    "lake",
    "api",
)


def registrars() -> Iterator[Registrar]:
    for name in MODULES:
        try:
            module = importlib.import_module(f"billing_batch.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"billing_batch.cli.{name}":
                continue  # that domain is not built yet
            raise
        yield module.register
