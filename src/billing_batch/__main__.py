"""``python -m billing_batch`` = ``billing-batch``."""

import sys

from .cli import main

sys.exit(main())
