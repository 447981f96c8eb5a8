"""A reference model of docs/billing-rules.md (the rules of money over time).

Written from the specification alone, in plain Python with ``Decimal``: it imports nothing
from the project, so the property test in ``tests/timeline/test_property.py`` checks the project's
rating, periods and invoicing against an independent reading of the rules, never against
themselves.

What it models, per workspace: usage events in arrival order (identity = (workspace, id),
the first arrival wins), subscriptions (effective-dated create / change / cancel, anchor
days, trials), the price book's plan assignment (undated: the book as it is now), and the
nightly runs: billing periods (section 2), segments (3), quantities (4), amounts (5), the
ledger of what finalized live invoices billed (6) and which invoice carries what (7).
Subscription refusals follow section 8.

Readings of the spec where it leaves room are marked ``ASSUMPTION`` below; the test's
module docstring lists them.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

__all__ = [
    "DEFAULT_PLANS",
    "METRICS",
    "Book",
    "Event",
    "Line",
    "Model",
    "ModelInvoice",
    "Period",
    "Plan",
    "Price",
    "Segment",
    "Sub",
    "Tier",
    "book_toml",
    "money",
    "nominal",
]

ZERO = Decimal(0)
CENT = Decimal("0.01")
GB_MONTH = Decimal("0.000000001")  # gauge quantities: 9 decimals, half-up
ORIGIN = date(2023, 10, 1)  # a calendar-month start before anything the tests generate
HORIZON = date(2025, 6, 30)  # the partition is computed up to here
ONE_DAY = timedelta(days=1)
#: metric -> aggregation (the test uses these two)
METRICS: Mapping[str, str] = {"api_calls": "sum", "storage": "gauge"}


def money(x: Decimal) -> Decimal:
    """Quantize half-up to the cent (USD: the only currency of the test)."""
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


# --- prices ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tier:
    up_to: Decimal | None  # inclusive, in billable units; None = unbounded
    unit_price: Decimal
    flat_fee: Decimal = ZERO


@dataclass(frozen=True)
class Price:
    """docs/pricing.md: per_unit, graduated, package (the models the test uses);
    ``included`` comes off first."""

    model: str
    unit_price: Decimal = ZERO
    tiers: tuple[Tier, ...] = ()
    included: Decimal = ZERO
    package_size: Decimal = ZERO
    package_price: Decimal = ZERO

    def exact(self, quantity: Decimal, included: Decimal) -> Decimal:
        billable = max(ZERO, quantity - included)
        if billable == 0:
            return ZERO
        if self.model == "per_unit":
            return billable * self.unit_price
        if self.model == "graduated":
            total, lower = ZERO, ZERO
            for tier in self.tiers:
                upper = billable if tier.up_to is None else min(billable, tier.up_to)
                share = upper - lower
                if share > 0:
                    total += share * tier.unit_price + tier.flat_fee
                if tier.up_to is None or billable <= tier.up_to:
                    break
                lower = tier.up_to
            return total
        if self.model == "package":
            packages = (billable / self.package_size).to_integral_value(rounding=ROUND_CEILING)
            return packages * self.package_price
        raise AssertionError(f"unknown model {self.model}")

    def amount(self, quantity: Decimal, included: Decimal) -> Decimal:
        """A line amount: exact, then rounded once."""
        return money(self.exact(quantity, included))


@dataclass(frozen=True)
class Plan:
    name: str
    base_fee: Decimal
    minimum: Decimal
    prices: Mapping[str, Price]


@dataclass
class Book:
    """The price book: plans and the undated per-workspace plan assignment."""

    plans: Mapping[str, Plan]
    default_plan: str
    assignments: dict[str, str] = field(default_factory=dict)
    version: int = 1

    def plan_of(self, ws: str) -> str:
        return self.assignments.get(ws, self.default_plan)


def _d(x: str) -> Decimal:
    return Decimal(x)


#: The test's price book (the test writes it as TOML from these same values).
DEFAULT_PLANS: Mapping[str, Plan] = {
    "payg": Plan(
        "payg",
        ZERO,
        ZERO,
        {
            "api_calls": Price("per_unit", unit_price=_d("0.01")),
            "storage": Price("per_unit", unit_price=_d("0.25")),
        },
    ),
    "growth": Plan(
        "growth",
        _d("99.00"),
        _d("250.00"),
        {
            "api_calls": Price(
                "graduated",
                included=_d("1000"),
                tiers=(
                    Tier(_d("4000"), _d("0.02")),
                    Tier(_d("12000"), _d("0.01"), _d("5.00")),
                    Tier(None, _d("0.005")),
                ),
            ),
            "storage": Price("package", package_size=_d("10"), package_price=_d("2.00")),
        },
    ),
    "scale": Plan(
        "scale",
        _d("49.00"),
        _d("120.00"),
        {
            "api_calls": Price("per_unit", unit_price=_d("0.015"), included=_d("500")),
            "storage": Price("per_unit", unit_price=_d("0.30"), included=_d("2.5")),
        },
    ),
}


# --- subscriptions -----------------------------------------------------------------------
@dataclass
class Sub:
    """One subscription: effective-dated plans, an optional cancellation (the first day
    without it) and trial days from its start."""

    id: int
    start: date
    anchor: int
    trial_days: int
    plans: list[tuple[date, str]]
    cancel: date | None = None

    def in_force(self, d: date) -> bool:
        return self.start <= d and (self.cancel is None or d < self.cancel)

    def plan_on(self, d: date) -> str:
        plan = self.plans[0][1]
        for eff, name in self.plans:
            if eff <= d:
                plan = name
        return plan

    def trialing(self, d: date) -> bool:
        return d < self.start + timedelta(days=self.trial_days)

    def last_change(self) -> date:
        return self.plans[-1][0]


# --- events ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    ws: str
    id: str
    metric: str
    day: date
    quantity: Decimal


# --- periods and segments ----------------------------------------------------------------
@dataclass(frozen=True, order=True)
class Period:
    start: date
    end: date
    nominal_start: date
    nominal_end: date

    @property
    def nominal_days(self) -> int:
        return (self.nominal_end - self.nominal_start).days + 1

    @property
    def key(self) -> tuple[date, date]:
        return (self.start, self.end)


@dataclass(frozen=True)
class Segment:
    start: date
    end: date
    sub_id: int | None
    sub_plan: str | None  # the subscription's plan; None: the price book's plan prices it
    fee_days: int

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def key(self) -> tuple[date, date]:
        return (self.start, self.end)


def _add_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, d.day)


def _sub_month(d: date) -> date:
    return date(d.year - (d.month == 1), (d.month - 2) % 12 + 1, d.day)


def nominal(day: date, anchor: int) -> tuple[date, date]:
    """The anchor-aligned period containing ``day`` (anchor 1: the calendar month)."""
    start = date(day.year, day.month, anchor)
    if start > day:
        start = _sub_month(start)
    return start, _add_month(start) - ONE_DAY


# --- lines and invoices ------------------------------------------------------------------
#: (period key, segment key) of a ledger entry
SegKey = tuple[tuple[date, date], tuple[date, date]]


@dataclass(frozen=True)
class Line:
    """One invoice line as the test compares it.

    kind: usage | base_fee | minimum (the base kind; ``late`` says whether it is the late_
    variant). quantity: units or GB-months (usage), fee days (base_fee), None (minimum).
    """

    kind: str
    late: bool
    metric: str | None
    period: tuple[date, date]  # the billing period whose usage or days it bills
    segment: tuple[date, date]
    quantity: Decimal | None
    amount: Decimal
    plan: str

    @property
    def full_kind(self) -> str:
        return ("late_" if self.late else "") + self.kind


@dataclass
class ModelInvoice:
    ws: str
    period: tuple[date, date]
    lines: list[Line]
    run_date: date
    seq: int  # creation order over the whole model
    void: bool = False
    actual_id: str | None = None

    @property
    def subtotal(self) -> Decimal:
        return sum((ln.amount for ln in self.lines), ZERO)


@dataclass
class Due:
    """What a segment owes now (section 5), before the ledger is subtracted."""

    plan: str
    quantities: dict[str, Decimal]
    amounts: dict[str, Decimal]
    fee_days: int
    fee: Decimal
    top_up: Decimal


# --- the model ---------------------------------------------------------------------------
class Model:
    def __init__(self, book: Book, workspaces: Iterable[str]) -> None:
        self.book = book
        self.workspaces = sorted(workspaces)
        self.events: dict[tuple[str, str], Event] = {}  # ingested; the first arrival wins
        self.pending: list[Event] = []  # landed, not ingested yet
        self.subs: dict[str, list[Sub]] = defaultdict(list)
        self.invoices: list[ModelInvoice] = []
        self._next_sub = 1
        # usage ingested since the last run (audit: "arrived after the last run")
        self.ingested_since_run = False

    # -- inputs ---------------------------------------------------------------------------
    def land(self, event: Event) -> None:
        self.pending.append(event)

    def ingest(self) -> list[Event]:
        """Absorb landed events; returns those that are new (not duplicates)."""
        new = []
        for ev in self.pending:
            if (ev.ws, ev.id) not in self.events:
                self.events[(ev.ws, ev.id)] = ev
                new.append(ev)
        self.pending = []
        if new:
            self.ingested_since_run = True
        return new

    def protected_end(self, ws: str) -> date | None:
        """The end of the latest period of ``ws`` with a finalized live invoice."""
        ends = [inv.period[1] for inv in self.invoices if inv.ws == ws and not inv.void]
        return max(ends) if ends else None

    def refuses(self, ws: str, effective: date) -> bool:
        """Section 8: a subscription event effective on a day already covered by a
        finalized live invoice of the workspace is refused."""
        end = self.protected_end(ws)
        return end is not None and effective <= end

    def current_sub(self, ws: str) -> Sub | None:
        return self.subs[ws][-1] if self.subs[ws] else None

    def create_sub(self, ws: str, plan: str, start: date, anchor: int, trial_days: int) -> Sub:
        sub = Sub(self._next_sub, start, anchor, trial_days, [(start, plan)])
        self._next_sub += 1
        self.subs[ws].append(sub)
        return sub

    # -- time structure -------------------------------------------------------------------
    def sub_on(self, ws: str, d: date) -> Sub | None:
        for sub in self.subs[ws]:
            if sub.in_force(d):
                return sub
        return None

    def partition(self, ws: str) -> list[Period]:
        """Every billing period from ORIGIN to HORIZON (section 2).

        A period starts on: an anchor day of the anchor in force (the subscription's, else
        1: calendar months); the day after a subscription's last day in force (a
        cancellation cuts the final period); the start day of a subscription whose anchor
        differs from the one in force the day before.
        """
        starts: list[tuple[date, int]] = []
        prev: Sub | None = None
        d = ORIGIN
        while d <= HORIZON:
            sub = self.sub_on(ws, d)
            anchor = sub.anchor if sub else 1
            prev_anchor = prev.anchor if prev else 1
            cut = (
                d == ORIGIN
                or d.day == anchor
                or (prev is not None and sub is not prev)
                or (sub is not None and prev is None and anchor != prev_anchor)
            )
            if cut:
                starts.append((d, anchor))
            prev = sub
            d += ONE_DAY
        periods = []
        for i, (start, anchor) in enumerate(starts):
            end = starts[i + 1][0] - ONE_DAY if i + 1 < len(starts) else HORIZON
            n_start, n_end = nominal(start, anchor)
            periods.append(Period(start, end, n_start, n_end))
        return periods

    def segments(self, ws: str, period: Period) -> list[Segment]:
        """Runs of consecutive days with one subscription (or none) and one plan."""
        out: list[Segment] = []
        run: list[date] = []
        run_key: tuple[int | None, str | None] | None = None

        def flush() -> None:
            if not run:
                return
            sub_id, plan = run_key or (None, None)
            fee_days = 0
            if sub_id is not None:
                sub = next(s for s in self.subs[ws] if s.id == sub_id)
                fee_days = sum(1 for x in run if not sub.trialing(x))
            out.append(Segment(run[0], run[-1], sub_id, plan, fee_days))

        d = period.start
        while d <= period.end:
            sub = self.sub_on(ws, d)
            key = (sub.id, sub.plan_on(d)) if sub else (None, None)
            if key != run_key:
                flush()
                run, run_key = [], key
            run.append(d)
            d += ONE_DAY
        flush()
        return out

    def first_activity(self, ws: str) -> date | None:
        days = [ev.day for (w, _), ev in self.events.items() if w == ws]
        days += [s.start for s in self.subs[ws]]
        return min(days) if days else None

    def periods(self, ws: str, before: date) -> list[Period]:
        """The periods of ``ws`` since its first activity that are closed for a run on
        ``before`` (end < before)."""
        first = self.first_activity(ws)
        if first is None:
            return []
        return [p for p in self.partition(ws) if p.end >= first and p.end < before]

    # -- quantities -----------------------------------------------------------------------
    def _usage_index(self, ws: str) -> tuple[dict[date, Decimal], list[date], list[Decimal]]:
        sums: dict[date, Decimal] = defaultdict(lambda: ZERO)
        readings: dict[date, Decimal] = {}
        for (w, _), ev in self.events.items():
            if w != ws:
                continue
            if ev.metric == "api_calls":
                sums[ev.day] += ev.quantity
            else:  # gauge: the day's largest reading
                readings[ev.day] = max(readings.get(ev.day, ev.quantity), ev.quantity)
        days = sorted(readings)
        return sums, days, [readings[d] for d in days]

    def quantities(self, ws: str, period: Period, seg: Segment) -> dict[str, Decimal]:
        sums, rdays, rvalues = self._usage_index(ws)
        total_sum, gauge = ZERO, ZERO
        d = seg.start
        while d <= seg.end:
            total_sum += sums.get(d, ZERO)
            i = bisect.bisect_right(rdays, d)
            gauge += rvalues[i - 1] if i else ZERO  # the value in force, carried forward
            d += ONE_DAY
        gb_months = (gauge / Decimal(period.nominal_days)).quantize(
            GB_MONTH, rounding=ROUND_HALF_UP
        )
        return {"api_calls": total_sum, "storage": gb_months}

    # -- the ledger -----------------------------------------------------------------------
    def ledger(self, ws: str) -> list[Line]:
        return [ln for inv in self.invoices if inv.ws == ws and not inv.void for ln in inv.lines]

    def _billed(
        self, ledger: list[Line], period: Period, seg: Segment
    ) -> tuple[dict[tuple[str, str | None], tuple[Decimal, Decimal]], str | None]:
        """Per (kind, metric): (quantity, amount) billed for the segment, and the plan the
        ledger recorded for it (None when nothing live was billed for it)."""
        out: dict[tuple[str, str | None], tuple[Decimal, Decimal]] = {}
        plan = None
        for ln in ledger:
            if ln.period != period.key or ln.segment != seg.key:
                continue
            q, a = out.get((ln.kind, ln.metric), (ZERO, ZERO))
            out[(ln.kind, ln.metric)] = (q + (ln.quantity or ZERO), a + ln.amount)
            plan = ln.plan
        return out, plan

    def due(self, ws: str, period: Period, seg: Segment, plan_name: str) -> Due:
        plan = self.book.plans[plan_name]
        n = Decimal(period.nominal_days)
        s = Decimal(seg.days)
        qty = self.quantities(ws, period, seg)
        amounts = {}
        for metric, q in qty.items():
            price = plan.prices[metric]
            included = price.included if s == n else price.included * s / n
            amounts[metric] = price.amount(q, included)
        f = seg.fee_days
        fee = money(plan.base_fee * f / n) if f > 0 else ZERO
        top_up = ZERO
        if f > 0:
            top_up = max(ZERO, money(plan.minimum * f / n) - sum(amounts.values(), ZERO))
        return Due(plan_name, qty, amounts, f, fee, top_up)

    def differences(self, ws: str, period: Period, ledger: list[Line]) -> list[Line]:
        """Section 6: what is due now minus what the live ledger says was billed."""
        out: list[Line] = []
        for seg in self.segments(ws, period):
            billed, recorded_plan = self._billed(ledger, period, seg)
            # ASSUMPTION: a segment without a subscription keeps the plan of its live ledger
            # rows (any kind or metric); else the price book's plan now.
            plan = seg.sub_plan or recorded_plan or self.book.plan_of(ws)
            due = self.due(ws, period, seg, plan)
            usage_diff = False
            for metric in METRICS:
                bq, ba = billed.get(("usage", metric), (ZERO, ZERO))
                dq = due.quantities[metric] - bq
                # ASSUMPTION: the amount is what is due minus the amounts billed (which is
                # price(Q_now) - price(Q_billed) whenever the billed rows telescope, i.e.
                # unless a void released an earlier row and kept a later one)
                da = due.amounts[metric] - ba
                if dq or da:
                    usage_diff = True
                    out.append(Line("usage", False, metric, period.key, seg.key, dq, da, plan))
            bf_days, bf_amount = billed.get(("base_fee", None), (ZERO, ZERO))
            d_days = Decimal(due.fee_days) - bf_days
            d_fee = due.fee - bf_amount
            if d_days or d_fee:
                out.append(Line("base_fee", False, None, period.key, seg.key, d_days, d_fee, plan))
            if usage_diff or d_days:
                _, min_amount = billed.get(("minimum", None), (ZERO, ZERO))
                d_min = due.top_up - min_amount
                if d_min:
                    out.append(Line("minimum", False, None, period.key, seg.key, None, d_min, plan))
        return out

    # -- a run ----------------------------------------------------------------------------
    def run(self, run_date: date) -> list[ModelInvoice]:
        """A nightly run for ``run_date``: ingest, then section 7. Returns the invoices it
        creates, in creation order."""
        self.ingest()
        created: list[ModelInvoice] = []
        for ws in self.workspaces:
            created += self._run_workspace(ws, run_date)
        created.sort(key=lambda inv: (inv.period[0], inv.ws))
        for inv in created:
            inv.seq = len(self.invoices)
            self.invoices.append(inv)
        self.ingested_since_run = False
        return created

    def _run_workspace(self, ws: str, run_date: date) -> list[ModelInvoice]:
        closed = self.periods(ws, run_date)
        ledger = self.ledger(ws)
        finalized = {inv.period for inv in self.invoices if inv.ws == ws and not inv.void}
        own: dict[tuple[date, date], list[Line]] = {}
        late: list[tuple[Period, list[Line]]] = []
        for p in closed:
            diffs = self.differences(ws, p, ledger)
            if not diffs:
                continue
            if p.key in finalized:
                late.append((p, diffs))
            else:
                own[p.key] = diffs
        for p, diffs in late:
            later = sorted(k for k in own if k[0] > p.start)
            if later:
                target = later[0]
            else:
                carriers = [q.key for q in closed if q.start > p.start and q.key not in finalized]
                if not carriers:
                    continue  # waits for the next period to close (7.3)
                target = max(carriers)
                own.setdefault(target, [])
            own[target] += [
                Line(x.kind, True, x.metric, x.period, x.segment, x.quantity, x.amount, x.plan)
                for x in diffs
            ]
        return [ModelInvoice(ws, key, lines, run_date, -1) for key, lines in sorted(own.items())]

    # -- what is not billed ---------------------------------------------------------------
    def unbilled_of(self, ws: str, before: date) -> list[Line]:
        """Differences of the periods of ``ws`` closed for ``before`` that no invoice
        carries yet (late usage waiting for a carrier, usage ingested since the last run,
        rows a void released, days a backdated subscription added)."""
        ledger = self.ledger(ws)
        out: list[Line] = []
        for p in self.periods(ws, before):
            out += self.differences(ws, p, ledger)
        return out

    def void(self, inv: ModelInvoice) -> None:
        inv.void = True


# --- the price book as TOML (docs/pricing.md) ---------------------------------------------
def _toml_price(price: Price) -> list[str]:
    out = [f'model = "{price.model}"']
    if price.included:
        out.append(f'included = "{price.included}"')
    if price.model == "per_unit":
        out.append(f'unit_price = "{price.unit_price}"')
    elif price.model == "package":
        out += [
            f'package_size = "{price.package_size}"',
            f'package_price = "{price.package_price}"',
        ]
    else:
        tiers = []
        for t in price.tiers:
            parts = [] if t.up_to is None else [f'up_to = "{t.up_to}"']
            parts.append(f'unit_price = "{t.unit_price}"')
            if t.flat_fee:
                parts.append(f'flat_fee = "{t.flat_fee}"')
            tiers.append("{ " + ", ".join(parts) + " }")
        out.append("tiers = [" + ", ".join(tiers) + "]")
    return out


def book_toml(book: Book) -> str:
    """The book as the TOML file the project reads (tax 0, USD)."""
    lines = [
        f'version = "timeline-{book.version}"',
        f'default_plan = "{book.default_plan}"',
        'default_currency = "USD"',
        'default_tax_rate = "0"',
    ]
    for plan in book.plans.values():
        lines += ["", f"[plans.{plan.name}]", 'currency = "USD"']
        lines += [f'base_fee = "{plan.base_fee}"', f'minimum = "{plan.minimum}"']
        for metric, price in plan.prices.items():
            lines += ["", f"[plans.{plan.name}.prices.{metric}]", *_toml_price(price)]
    for ws, plan_name in sorted(book.assignments.items()):
        lines += ["", f"[workspaces.{ws}]", f'plan = "{plan_name}"']
    return "\n".join(lines) + "\n"
