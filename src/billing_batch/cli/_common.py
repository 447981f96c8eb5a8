"""Helpers shared by the CLI modules: settings from the global flags, JSON printing."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._core.jsonutil import dumps
from ..config.settings import Settings, load_settings


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, home=args.home)


def print_json(value: Any) -> None:
    sys.stdout.write(dumps(value, indent=2) + "\n")
    sys.stdout.flush()
