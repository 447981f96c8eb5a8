"""The deployment's entry point (``prefect.yaml``: ``flows/nightly.py:nightly``).

The flow itself is :mod:`billing_batch.nightly.flow`, imported normally by the CLI and
the scheduler; this file only points Prefect at it. ``python flows/nightly.py`` serves the
flow on its schedule (needs a Prefect server; see README).
"""

from __future__ import annotations

import sys

from billing_batch.nightly.flow import nightly

__all__ = ["nightly"]

if __name__ == "__main__":
    from billing_batch.config.settings import load_settings
    from billing_batch.nightly.schedule import serve

    sys.exit(serve(load_settings()))
