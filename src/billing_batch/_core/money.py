"""Money: ``Decimal`` in major units end to end, quantized by one helper.

Rounding rule (stated once, used everywhere): **ROUND_HALF_UP to the currency's minor
unit** (2 decimals for USD/EUR/GBP, 0 for JPY/KRW, 3 for BHD/KWD...). Each invoice line
is rounded once; tax is computed on the rounded subtotal and rounded once.
Stripe amounts are integers in minor units (:func:`to_minor`).
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from .errors import InputError

ROUNDING = ROUND_HALF_UP

#: ISO 4217 minor units for currencies that do not use two decimals.
_MINOR_UNITS: dict[str, int] = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip


def minor_units(currency: str) -> int:
    """Decimals of the currency's minor unit (2 unless ISO 4217 says otherwise)."""
    code = currency.upper()
    if len(code) != 3 or not code.isalpha():
        raise InputError(f"not an ISO 4217 currency code: {currency!r}")
    return _MINOR_UNITS.get(code, 2)


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round ``amount`` to the currency's minor unit, HALF_UP."""
    return amount.quantize(quantum(currency), rounding=ROUNDING)


def to_minor(amount: Decimal, currency: str) -> int:
    """Major units → integer minor units (must already be on the minor unit)."""
    q = quantize(amount, currency)
    if q != amount:
        raise ValueError(f"{amount} {currency} is not a whole number of minor units")
    return int(q.scaleb(minor_units(currency)))


def from_minor(amount: int, currency: str) -> Decimal:
    return Decimal(amount).scaleb(-minor_units(currency))


#: A plain decimal as written in a price book: an optional ``-``, the integer part
#: without leading zeros, an optional fraction; ASCII digits only. No exponent
#: (``1e-2``), digit separator (``1_000``), surrounding spaces, ``+`` sign or ``.5``.
PLAIN_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?", re.ASCII)


def parse_decimal(value: object, *, what: str) -> Decimal:
    """A Decimal from a TOML/JSON value: ints exactly; strings only when they are plain
    decimals (:data:`PLAIN_DECIMAL`: ``"0.01"``, ``"12"``, ``"-3.5"``); floats, booleans,
    exponents, underscores, spaces and a negative zero (``"-0"``, ``"-0.00"``) refused
    with an InputError naming ``what``."""
    if isinstance(value, bool) or isinstance(value, float):
        raise InputError(f'{what}: write decimals as strings ("0.01"), not floats: {value!r}')
    try:
        d = Decimal(str(value)) if isinstance(value, (int, str)) else Decimal(value)  # type: ignore[arg-type]
    except (InvalidOperation, TypeError, ValueError):
        raise InputError(f"{what}: not a decimal number: {value!r}") from None
    if not d.is_finite():
        raise InputError(f"{what}: not a finite number: {value!r}")
    if isinstance(value, str) and not PLAIN_DECIMAL.fullmatch(value):
        raise InputError(
            f"{what}: not a plain decimal: {value!r} (write digits with an optional "
            'fraction, as in "0.01" or "1000": no exponent, "_", spaces, "+" or leading zeros)'
        )
    if d.is_zero() and d.is_signed():
        raise InputError(f"{what}: negative zero is not a number to bill with: {value!r}")
    return d


def format_amount(amount: Decimal, currency: str) -> str:
    """``Decimal('1234.5'), 'USD'`` → ``'1,234.50'`` (grouped, at the minor unit)."""
    q = quantize(amount, currency)
    places = minor_units(currency)
    return f"{q:,.{places}f}"


def format_quantity(quantity: Decimal) -> str:
    """``Decimal('45000')`` → ``'45,000'``; ``Decimal('12.50')`` → ``'12.5'``."""
    if quantity == quantity.to_integral_value():
        return f"{int(quantity):,}"
    text = format(quantity.normalize(), "f")
    whole, _, frac = text.partition(".")
    return f"{int(whole):,}.{frac}" if whole not in ("", "-") else text


def format_price(price: Decimal, currency: str) -> str:
    """Unit prices and exact (unrounded) amounts, never rounded: every significant
    decimal, at least the currency's minor unit, grouped.

    ``0.5 USD`` → ``'0.50'``; ``0.008 USD`` → ``'0.008'``; ``1234.5 JPY`` → ``'1,234.5'``;
    ``75 JPY`` → ``'75'``.
    """
    if not price.is_finite():
        raise InputError(f"not a finite number: {price}")
    d = price.normalize() if price != 0 else Decimal(0)
    exponent = d.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    places = max(minor_units(currency), -exponent)
    return f"{d:,.{places}f}"


def format_money(amount: Decimal, currency: str) -> str:
    """``Decimal('550'), 'usd'`` → ``'550.00 USD'`` (format_amount and the currency code)."""
    return f"{format_amount(amount, currency)} {currency.upper()}"
