"""Nothing secret-shaped leaves through logging, errors or records: API keys (also
Stripe's masked form) and PaymentIntent client secrets. Importing this module installs
the filter on the ``stripe`` logger (the gateway imports it)."""

from __future__ import annotations

import logging
import re

#: API keys (also Stripe's masked form, sk_test_****1234) and PaymentIntent client
#: secrets (pi_..._secret_..., in the SDK's debug log of response bodies).
_SECRET = re.compile(r"\b(?:sk|rk)_(?:test|live)_[A-Za-z0-9*]+|\b[a-z]+_\w+_secret_\w+")


def redact(text: str, key: str | None = None) -> str:
    """No API key in anything we log, store or raise (Stripe's own 401 message quotes a
    masked key: that goes too), and no PaymentIntent client secret."""
    if key:
        text = text.replace(key, "[redacted]")
    return _SECRET.sub("[redacted]", text)


class _RedactSecrets(logging.Filter):
    """On the ``stripe`` logger: the SDK logs Stripe's error messages (a 401's quotes
    the masked API key) and, at debug level, response bodies (a PaymentIntent's client
    secret). Nothing secret-shaped leaves through logging."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if _SECRET.search(text):
            record.msg = _SECRET.sub("[redacted]", text)
            record.args = None
        return True


_stripe_logger = logging.getLogger("stripe")
if not any(isinstance(f, _RedactSecrets) for f in _stripe_logger.filters):
    _stripe_logger.addFilter(_RedactSecrets())


__all__ = ["redact"]
