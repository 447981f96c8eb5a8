"""Money over time (docs/billing-rules.md): a stateful property test over random timelines.

A hypothesis ``RuleBasedStateMachine`` drives the real system (real lake, real state
store, the nightly ``bill``) through random billing timelines: usage on random days
(``api_calls``, a sum, and ``storage``, a gauge billed in GB-months), late events for
closed periods, duplicate arrivals, subscriptions created / changed / cancelled (random
anchors, trials; refusals predicted by section 8), price-book plan assignments, nightly
runs on random dates moving forward with gaps (catch-ups), reruns of the same or an
earlier date, voids, and money-only credit notes. After every step it checks the system
against ``tests/timeline/model.py``, a reference model written from the specification alone:

1. the audit (as of the last run) finds nothing unexplained, and it lists every
   difference the model knows is not billed yet;
2. every unit of usage of a closed period is on exactly one non-void invoice (per
   workspace, metric, period and segment), except what the spec says waits (7.3);
3. no fee or minimum for a day outside the days a subscription is in force, and the fee
   days billed per segment are the model's;
4. the amounts billed per segment and metric are the model's prices of the billed
   quantity; base fees and minimum top-ups per the spec;
5. a rerun of the same or an earlier date creates and changes nothing (when nothing new
   arrived); an invoice, once issued, never changes;
plus, per run, the invoices it creates: which periods, which lines (kind, metric, segment,
late period, plan, quantity, amount), in which order and with gap-free numbers.
``test_backfill_equals_single_catch_up`` checks the sixth: the same inputs in two homes,
run at every period close vs one catch-up run, give the same invoices.

Readings of the spec where it leaves room (the ASSUMPTION marks in the model):
- periods keep their natural boundaries: the first period is the whole calendar (or
  anchor) period containing the first activity, not clipped to it;
- a subscription with another anchor than the one in force the day before (1 without a
  subscription) starts a period on its start day; one with the same anchor does not; the
  days after a cancellation are calendar periods (nominal: their calendar month);
- the plan of a segment without a subscription is the plan of its live ledger rows (any
  kind or metric), else the price book's plan at the time of the run;
- a usage difference's amount is due-now minus the amounts already billed (the spec's
  ``price(Q_now) - price(Q_billed)`` differs only when a void released an earlier row of
  a segment and kept a later one: then it would bill the units twice in money);
- a negative difference (a late, lower storage reading lowers the carried value) is a
  line like any other;
- a minimum line is compared by amount only (a zero-amount minimum line is ignored);
- after a void, a backdated subscription or an ingest, what the next run will bill is
  "explained" for the audit.

Profiles: the default one is sized for the default suite; ``pytest
--hypothesis-profile=long tests/timeline/test_property.py`` runs many more and longer timelines.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, note
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from billing_batch import BillingError
from billing_batch.config.settings import Settings, load_settings
from tests.timeline.model import (
    DEFAULT_PLANS,
    ZERO,
    Book,
    Event,
    Line,
    Model,
    ModelInvoice,
    book_toml,
)

WORKSPACES = ("ws_a", "ws_b")
FIRST_DAY = date(2023, 12, 1)  # the earliest usage or subscription day generated
LAST_DAY = date(2024, 8, 31)  # the latest one
START = date(2024, 1, 1)  # "today" before the first run
LAST_RUN = date(2024, 9, 1)
SUB_PLANS = ("growth", "scale")  # plans with a base fee and a minimum
ONE_DAY = timedelta(days=1)


def _profile_settings(default: dict[str, Any], **always: Any) -> hsettings:
    """``default`` (sized for the default suite) unless the run asked for the ``long``
    profile (``--hypothesis-profile=long``), which keeps its own example and step counts.
    Not "unless the profile is not ``default``": with ``CI`` set in the environment
    Hypothesis loads its ``ci`` profile (100 examples, 50 steps), which made the default
    suite take 20 minutes on CI instead of 4."""
    if hsettings.get_current_profile_name() == "long":
        return hsettings(hsettings.default, **always)
    return hsettings(**default, **always)


ALWAYS: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
}
#: The default suite's quick pass (a few short timelines) and the ``slow`` run's longer one.
QUICK_SETTINGS = _profile_settings({"max_examples": 8, "stateful_step_count": 12}, **ALWAYS)
MACHINE_SETTINGS = _profile_settings({"max_examples": 40, "stateful_step_count": 20}, **ALWAYS)
BACKFILL_SETTINGS = _profile_settings({"max_examples": 2}, **ALWAYS)


# --- homes -------------------------------------------------------------------------------
def _close_lake_connections() -> None:
    from billing_batch.storage import lake

    close = getattr(lake, "close_connections", None)
    if close is not None:
        close()


class Homes:
    """Fresh $BILLING_HOMEs at fixed paths, copied from a template made once per path.

    Creating a lake costs ~0.5 s; a copy is much cheaper. The copy goes to the SAME path
    the template was made at, so the absolute paths in the catalog stay valid.
    """

    _templates: ClassVar[dict[Path, Path]] = {}

    @classmethod
    def fresh(cls, path: Path) -> Path:
        _close_lake_connections()
        template = cls._templates.get(path)
        if template is None:
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
            settings = home_settings(path)
            write_book(path, Book(DEFAULT_PLANS, "payg"))
            from billing_batch import ingest_logs as ingest
            from billing_batch import list_invoices

            ingest(settings)  # creates the lake (nothing to ingest)
            list_invoices(settings)  # creates the state store
            _close_lake_connections()
            template = path.with_name(path.name + ".template")
            shutil.rmtree(template, ignore_errors=True)
            shutil.copytree(path, template)
            cls._templates[path] = template
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(template, path)
        return path


def book_path(home: Path) -> Path:
    return home / "prices.toml"


def home_settings(home: Path) -> Settings:
    return load_settings(
        env={
            "BILLING_HOME": str(home),
            "BILLING_PRICE_BOOK": str(book_path(home)),
            "BILLING_LAKE_MEMORY_LIMIT": "256MB",
        }
    )


def write_book(home: Path, book: Book) -> None:
    tmp = home / ".prices.toml.tmp"
    tmp.write_text(book_toml(book))
    os.replace(tmp, book_path(home))


_file_seq = itertools.count(1)
_book_versions = itertools.count(1)


def land(home: Path, events: Iterable[Event]) -> None:
    """One landing file with these events (written aside, then renamed in). Quantities
    are JSON numbers written from their exact decimal text."""
    import json

    lines = []
    for i, ev in enumerate(events):
        ts = f"{ev.day.isoformat()}T{(i * 7) % 24:02d}:{(i * 13) % 60:02d}:00Z"
        head = json.dumps({"id": ev.id, "workspaceId": ev.ws, "metric": ev.metric})
        lines.append(f'{head[:-1]}, "quantity": {ev.quantity:f}, "timestamp": "{ts}"}}')
    if not lines:
        return
    name = f"timeline-{os.getpid()}-{next(_file_seq):06d}.jsonl"
    tmp = home / f".{name}.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    landing = home / "landing"
    landing.mkdir(exist_ok=True)
    os.replace(tmp, landing / name)


def rejected_lines(settings: Settings) -> list[str]:
    """Lines the ingest set aside (the test writes only valid events)."""
    return [
        line
        for path in sorted(settings.rejects_dir.glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


# --- the project's calls (imported late: they are what this test checks) -------------------
def bill(settings: Settings, run_date: date) -> Any:
    from billing_batch import bill as _bill

    return _bill(settings, run_date)


def audit(settings: Settings, as_of: date) -> Any:
    from billing_batch import audit as _audit

    return _audit(settings, as_of=as_of)


def invoices_of(settings: Settings) -> list[Any]:
    from billing_batch import list_invoices

    return list(list_invoices(settings, limit=100000))


# --- reading invoices the way the model writes them ----------------------------------------
def _as_date(x: Any) -> date:
    return x if isinstance(x, date) else date.fromisoformat(str(x)[:10])


def model_line(inv: Any, ln: Any) -> Line:
    """An actual invoice line as a model ``Line`` (late lines: their ``latePeriod``)."""
    late = ln.kind.startswith("late_")
    kind = ln.kind.removeprefix("late_")
    if late:
        lp = ln.detail["latePeriod"]
        period = (_as_date(lp["start"]), _as_date(lp["end"]))
    else:
        period = (_as_date(inv.period_start), _as_date(inv.period_end))
    quantity = None if kind == "minimum" else Decimal(ln.quantity)
    metric = ln.metric if kind == "usage" else None
    segment = (_as_date(ln.period_start), _as_date(ln.period_end))
    return Line(kind, late, metric, period, segment, quantity, Decimal(ln.amount), ln.plan)


def comparable(lines: Iterable[Line]) -> dict[tuple[Any, ...], tuple[Decimal, Decimal]]:
    """Lines summed per (kind, metric, period, segment, plan); zero minimum lines dropped."""
    out: dict[tuple[Any, ...], tuple[Decimal, Decimal]] = {}
    for ln in lines:
        if ln.kind == "minimum" and ln.amount == 0:
            continue
        key = (ln.full_kind, ln.metric, ln.period, ln.segment, ln.plan)
        q, a = out.get(key, (ZERO, ZERO))
        out[key] = (q + (ln.quantity or ZERO), a + ln.amount)
    return out


def actual_lines(inv: Any) -> dict[tuple[Any, ...], tuple[Decimal, Decimal]]:
    return comparable(model_line(inv, ln) for ln in inv.lines)


def show(lines: Mapping[tuple[Any, ...], tuple[Decimal, Decimal]]) -> str:
    return "\n".join(
        f"    {k[0]:<14} {k[1] or '-':<9} period {k[2][0]}..{k[2][1]} segment "
        f"{k[3][0]}..{k[3][1]} plan {k[4]}: quantity {v[0]} amount {v[1]}"
        for k, v in sorted(lines.items(), key=str)
    )


@dataclass(frozen=True)
class Frozen:
    """What an issued invoice must keep forever."""

    ws: str
    period: tuple[date, date]
    number: str | None
    subtotal: Decimal
    total: Decimal
    lines: tuple[tuple[Any, ...], ...]

    @classmethod
    def of(cls, inv: Any) -> Frozen:
        lines = tuple(
            (
                ln.kind,
                ln.metric,
                str(ln.quantity),
                str(ln.amount),
                str(ln.period_start),
                str(ln.period_end),
                ln.plan,
            )
            for ln in inv.lines
        )
        return cls(
            inv.workspace_id,
            (_as_date(inv.period_start), _as_date(inv.period_end)),
            inv.number,
            Decimal(inv.subtotal),
            Decimal(inv.total),
            lines,
        )


def number_parts(number: str) -> tuple[str, int]:
    """'INV-2024-000012' -> ('INV-2024-', 12)."""
    digits = len(number) - len(number.rstrip("0123456789"))
    assert digits, f"invoice number {number!r} does not end with a sequence number"
    return number[:-digits], int(number[-digits:])


# --- checks shared by the state machine and the backfill test ------------------------------
def check_run_invoices(
    created: list[ModelInvoice], actual_new: list[Any], result_ids: list[str], run_date: date
) -> None:
    """The invoices a run created are the model's: periods, lines, totals, order."""
    actual_by_key = {
        (inv.workspace_id, inv.period_start, inv.period_end): inv for inv in actual_new
    }
    assert len(actual_by_key) == len(actual_new), "two new invoices for one workspace and period"
    model_by_key = {(inv.ws, *inv.period): inv for inv in created}
    missing = sorted(set(model_by_key) - set(actual_by_key))
    extra = sorted(set(actual_by_key) - set(model_by_key))
    shown = [f"  {k} on the invoice:\n{show(actual_lines(actual_by_key[k]))}" for k in extra]
    shown += [f"  {k} the spec wants:\n{show(comparable(model_by_key[k].lines))}" for k in missing]
    assert not missing and not extra, (
        f"run {run_date}: invoices the spec wants but the run did not create: {missing}; "
        f"invoices the run created that the spec does not want: {extra}\n" + "\n".join(shown)
    )
    assert sorted(result_ids) == sorted(inv.id for inv in actual_new), (
        f"run {run_date}: result.invoice_ids {result_ids} are not the invoices it created"
    )
    for key, minv in model_by_key.items():
        inv = actual_by_key[key]
        minv.actual_id = inv.id
        got, want = actual_lines(inv), comparable(minv.lines)
        assert got == want, (
            f"run {run_date}: invoice {inv.id} of {key[0]} for {key[1]}..{key[2]}:\n"
            f"  lines on the invoice:\n{show(got)}\n  lines the spec wants:\n{show(want)}"
        )
        assert Decimal(inv.subtotal) == minv.subtotal, (inv.id, inv.subtotal, minv.subtotal)
        assert Decimal(inv.total) == minv.subtotal, (inv.id, inv.total, "tax is 0")
        assert inv.status in ("open", "overdue"), (inv.id, inv.status)
    # created in (period start, workspace) order, numbered in that order without gaps
    ordered = sorted(actual_new, key=lambda inv: (inv.period_start, inv.workspace_id))
    numbers = [number_parts(inv.number) for inv in ordered]
    for (p1, n1), (p2, n2) in itertools.pairwise(numbers):
        if p1 == p2:
            assert n2 == n1 + 1, f"run {run_date}: numbers not in (period start, workspace) order"


def check_numbering(actual: list[Any]) -> None:
    """Numbers are gap-free per series (issue year): 1..n."""
    series: dict[str, list[int]] = defaultdict(list)
    for inv in actual:
        if inv.number is not None:
            prefix, n = number_parts(inv.number)
            series[prefix].append(n)
    for prefix, ns in series.items():
        assert sorted(ns) == list(range(1, len(ns) + 1)), f"numbers of {prefix}: {sorted(ns)}"


def billed_by_segment(
    actual: list[Any],
) -> tuple[dict[tuple[Any, ...], list[Line]], dict[tuple[Any, ...], list[str]]]:
    """Live (non-void) actual lines per (ws, period, segment); and the invoices of each."""
    lines: dict[tuple[Any, ...], list[Line]] = defaultdict(list)
    where: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for inv in actual:
        if inv.status == "void" or inv.status == "draft":
            continue
        for ln in inv.lines:
            m = model_line(inv, ln)
            lines[(inv.workspace_id, m.period, m.segment)].append(m)
            where[(inv.workspace_id, m.period, m.segment)].append(inv.number or inv.id)
    return lines, where


def totals(lines: Iterable[Line], kind: str, metric: str | None = None) -> tuple[Decimal, Decimal]:
    """(quantity, amount) summed over lines of a base kind (late ones included)."""
    picked = [ln for ln in lines if ln.kind == kind and ln.metric == metric]
    return (
        sum((ln.quantity or ZERO for ln in picked), ZERO),
        sum((ln.amount for ln in picked), ZERO),
    )


def check_exactly_once(model: Model, actual: list[Any], as_of: date) -> None:
    """Invariants 2, 3 and 4 from the actual invoices, per (ws, period, segment): what the
    non-void invoices bill is what the spec has billed by now (the lake's quantity, less
    what waits for a later period to close), at the spec's prices; fees and minimums only
    on days a subscription is in force, for the fee days in force."""
    lines, where = billed_by_segment(actual)
    seen: set[tuple[Any, ...]] = set()
    for ws in model.workspaces:
        ledger = model.ledger(ws)
        waiting = {
            (ln.period, ln.segment, ln.kind, ln.metric): ln for ln in model.unbilled_of(ws, as_of)
        }
        for period in model.periods(ws, as_of):
            for seg in model.segments(ws, period):
                key = (ws, period.key, seg.key)
                seen.add(key)
                got = lines.get(key, [])
                want = [ln for ln in ledger if ln.period == period.key and ln.segment == seg.key]
                plan = next((ln.plan for ln in want), seg.sub_plan or model.book.plan_of(ws))
                lake = model.quantities(ws, period, seg)
                label = f"{ws} period {period.start}..{period.end} segment {seg.start}..{seg.end}"
                for metric in ("api_calls", "storage"):
                    (q_got, a_got), (q_want, a_want) = (
                        totals(got, "usage", metric),
                        totals(want, "usage", metric),
                    )
                    late = waiting.get((period.key, seg.key, "usage", metric))
                    assert q_got == q_want, (
                        f"{label} {metric}: non-void invoices {where.get(key)} bill {q_got}; the "
                        f"lake has {lake[metric]}, the spec has billed {q_want} by now"
                        + (f" ({late.quantity} waits)" if late else "")
                        + (": billed twice" if q_got > lake[metric] > 0 else "")
                    )
                    assert a_got == a_want, (
                        f"{label} {metric}: {q_got} billed for {a_got}, the spec prices it "
                        f"{a_want} (plan {plan})"
                    )
                (days_got, fee_got), (days_want, fee_want) = (
                    totals(got, "base_fee"),
                    totals(want, "base_fee"),
                )
                assert days_got == days_want, (
                    f"{label}: {days_got} fee days billed, the spec has billed {days_want} "
                    f"(fee days in force: {seg.fee_days})"
                )
                assert fee_got == fee_want, f"{label}: base fee {fee_got}, the spec's {fee_want}"
                min_got, min_want = totals(got, "minimum")[1], totals(want, "minimum")[1]
                assert min_got == min_want, f"{label}: minimum {min_got}, the spec's {min_want}"
                if seg.sub_id is None:
                    fixed = [ln for ln in got if ln.kind != "usage" and ln.amount]
                    assert not fixed, f"{label}: a fee or minimum without a subscription: {fixed}"
    # nothing billed for a period or segment the spec does not have or has not closed
    strays = {
        k: [(ln.full_kind, ln.metric, ln.quantity, ln.amount) for ln in v]
        for k, v in lines.items()
        if k not in seen and any(ln.quantity or ln.amount for ln in v)
    }
    assert not strays, (
        "lines for periods or segments the spec does not have or has not closed:\n"
        + ("\n".join(f"  {k}: {v} on {where[k]}" for k, v in strays.items()))
    )


def check_audit(settings: Settings, model: Model, as_of: date) -> None:
    report = audit(settings, as_of)
    assert not list(report.unexplained), "the audit finds unexplained differences:\n" + "\n".join(
        f"  {f}" for f in report.unexplained
    )
    findings = {
        (f.workspace_id, f.metric, _as_date(f.period_start), _as_date(f.period_end))
        for f in report.findings
        if f.status == "explained"
    }
    for ws in model.workspaces:
        for ln in model.unbilled_of(ws, as_of):
            if ln.kind == "usage" and ln.quantity:
                assert (ws, ln.metric, *ln.period) in findings, (
                    f"the audit does not list {ws} {ln.metric} {ln.period}: the lake has "
                    f"{ln.quantity} more than the invoices (not billed yet)"
                )


# --- the state machine ---------------------------------------------------------------------
api_quantities = st.one_of(st.integers(1, 300), st.integers(300, 6000))
gb = st.integers(1, 150_000).map(lambda n: Decimal(n) / 1000)  # up to 3 decimals


class TimelineMachine(RuleBasedStateMachine):
    root: ClassVar[Path]

    def __init__(self) -> None:
        super().__init__()
        self.home = Homes.fresh(self.root / "home")
        self.settings = home_settings(self.home)
        # a new version number for every book written in this process
        self.book = Book(DEFAULT_PLANS, "payg", version=next(_book_versions))
        write_book(self.home, self.book)
        self.model = Model(self.book, WORKSPACES)
        self.landed: list[Event] = []  # not written to landing/ yet
        self.ids = dict.fromkeys(WORKSPACES, 0)
        self.last_run: date | None = None  # the latest date run
        self.as_of: date | None = None  # the date of the latest run (a rerun: earlier)
        self.run_dates: list[date] = []
        self.changes = 0  # inputs changed (a counter)
        self.run_marks: list[tuple[date, int]] = []  # (date run, changes then)
        self.frozen: dict[str, Frozen] = {}
        self.credits: dict[str, int] = {}  # invoice id -> credit notes issued
        self.dirty = False

    def teardown(self) -> None:
        _close_lake_connections()

    # -- helpers --------------------------------------------------------------------------
    @property
    def today(self) -> date:
        return self.last_run or START

    def _day(self, base: date, offset: int) -> date:
        return min(max(base + timedelta(days=offset), FIRST_DAY), LAST_DAY)

    def _event(self, ws: str, metric: str, day: date, quantity: Decimal) -> Event:
        self.ids[ws] += 1
        return Event(ws, f"e{self.ids[ws]}", metric, day, quantity)

    def _flush(self) -> None:
        land(self.home, self.landed)
        for ev in self.landed:
            self.model.land(ev)
        self.landed = []

    def _bill(self, run_date: date) -> list[str]:
        self._flush()
        before = {inv.id for inv in invoices_of(self.settings)}
        note(f"bill({run_date})")
        result = bill(self.settings, run_date)
        assert list(result.failures) == [], f"run {run_date} failed: {result.failures}"
        assert rejected_lines(self.settings) == [], "the ingest rejected events the test wrote"
        created = self.model.run(run_date)
        self.as_of = run_date
        self.last_run = max(run_date, self.last_run or run_date)
        self.run_dates.append(run_date)
        actual = invoices_of(self.settings)
        self._check_state(actual)
        new = [inv for inv in actual if inv.id not in before]
        check_run_invoices(created, new, list(result.invoice_ids), run_date)
        for inv in new:
            self.frozen[inv.id] = Frozen.of(inv)
        assert not list(result.audit.unexplained), (
            f"run {run_date}: the run's audit finds unexplained differences: "
            f"{list(result.audit.unexplained)}"
        )
        self.run_marks.append((run_date, self.changes))
        self.dirty = True
        return [inv.id for inv in new]

    def _check_state(self, actual: list[Any]) -> None:
        # an issued invoice never changes (late usage never edits an invoice)
        by_id = {inv.id: inv for inv in actual}
        for inv_id, frozen in self.frozen.items():
            assert inv_id in by_id, f"invoice {inv_id} disappeared"
            assert Frozen.of(by_id[inv_id]) == frozen, f"invoice {inv_id} changed after issue"
        # every actual invoice is one the model issued (no stray draft either)
        known = {inv.actual_id for inv in self.model.invoices}
        for inv in actual:
            if inv.id in known:
                minv = next(m for m in self.model.invoices if m.actual_id == inv.id)
                want = ("void",) if minv.void else ("open", "overdue", "paid")
                assert inv.status in want, f"invoice {inv.id} is {inv.status}, expected {want}"
        if self.last_run is not None:
            check_exactly_once(self.model, actual, self.last_run)
        check_numbering(actual)

    # -- usage ----------------------------------------------------------------------------
    @rule(
        ws=st.sampled_from(WORKSPACES),
        batch=st.lists(
            st.tuples(st.integers(-25, 45), api_quantities, st.booleans(), gb),
            min_size=1,
            max_size=4,
        ),
    )
    def usage(self, ws: str, batch: list[tuple[int, int, bool, Decimal]]) -> None:
        """Usage around today: mostly for open periods, some for days just closed."""
        for offset, calls, is_storage, size in batch:
            day = self._day(self.today, offset)
            if is_storage:
                self.landed.append(self._event(ws, "storage", day, size))
            else:
                self.landed.append(self._event(ws, "api_calls", day, Decimal(calls)))
        self.changes += 1

    @precondition(lambda self: self.last_run is not None)
    @rule(
        ws=st.sampled_from(WORKSPACES),
        back=st.integers(1, 150),
        storage=st.booleans(),
        calls=api_quantities,
        size=gb,
    )
    def late_usage(self, ws: str, back: int, storage: bool, calls: int, size: Decimal) -> None:
        """An event for a period that is (most likely) closed and invoiced already."""
        assert self.last_run is not None
        day = self._day(self.last_run, -back)
        if storage:
            self.landed.append(self._event(ws, "storage", day, size))
        else:
            self.landed.append(self._event(ws, "api_calls", day, Decimal(calls)))
        self.changes += 1

    @precondition(lambda self: bool(self.model.events))
    @rule(i=st.integers(0, 10_000))
    def duplicate(self, i: int) -> None:
        """The same event again (identity (workspace, id)): it changes nothing."""
        events = sorted(self.model.events.values(), key=lambda e: (e.ws, e.id))
        self.landed.append(events[i % len(events)])

    @precondition(lambda self: bool(self.landed) and self.last_run is not None)
    @rule()
    def ingest_now(self) -> None:
        """Usage ingested between runs: the audit explains it until the next run."""
        from billing_batch import ingest_logs as ingest

        self._flush()
        report = ingest(self.settings)
        assert report.total("rejected") == 0, report.to_dict()
        self.model.ingest()
        self.changes += 1
        self.dirty = True

    # -- subscriptions and plans ----------------------------------------------------------
    def _try(self, what: str, ws: str, effective: date, call: Any) -> bool:
        """Call; the model predicts the refusal (section 8). True when accepted."""
        refused = self.model.refuses(ws, effective)
        note(
            f"{what} {ws} effective {effective}: {'refused' if refused else 'accepted'} "
            f"(invoiced through {self.model.protected_end(ws)})"
        )
        if refused:
            with pytest.raises(BillingError):
                call()
            return False
        call()
        self.changes += 1
        self.dirty = True
        return True

    @rule(
        ws=st.sampled_from(WORKSPACES),
        plan=st.sampled_from(SUB_PLANS),
        offset=st.integers(-50, 45),
        anchor=st.sampled_from([1, 1, 15, 28, 10]),
        trial=st.sampled_from([0, 0, 0, 7, 20]),
    )
    def create_subscription(self, ws: str, plan: str, offset: int, anchor: int, trial: int) -> None:
        from billing_batch import create_subscription

        current = self.model.current_sub(ws)
        if current is not None and current.cancel is None:
            return  # one subscription at a time (a structural refusal, not section 8's)
        start = self._day(self.today, offset)
        if current is not None and current.cancel is not None:
            start = max(start, current.cancel)
        if start > LAST_DAY:
            return

        def call() -> None:
            create_subscription(self.settings, ws, plan, start, anchor_day=anchor, trial_days=trial)

        if self._try(f"create {plan} anchor {anchor} trial {trial}", ws, start, call):
            self.model.create_sub(ws, plan, start, anchor, trial)

    @rule(ws=st.sampled_from(WORKSPACES), offset=st.integers(-50, 45))
    def change_subscription(self, ws: str, offset: int) -> None:
        from billing_batch import change_subscription

        sub = self.model.current_sub(ws)
        if sub is None or sub.cancel is not None:
            return
        effective = max(self._day(self.today, offset), sub.last_change() + ONE_DAY)
        if effective > LAST_DAY:
            return
        plan = next(p for p in SUB_PLANS if p != sub.plans[-1][1])

        def call() -> None:
            change_subscription(self.settings, ws, plan, effective)

        if self._try(f"change to {plan}", ws, effective, call):
            sub.plans.append((effective, plan))

    @rule(ws=st.sampled_from(WORKSPACES), offset=st.integers(-50, 45))
    def cancel_subscription(self, ws: str, offset: int) -> None:
        from billing_batch import cancel_subscription

        sub = self.model.current_sub(ws)
        if sub is None or sub.cancel is not None:
            return
        effective = max(self._day(self.today, offset), sub.last_change() + ONE_DAY)
        if effective > LAST_DAY:
            return

        def call() -> None:
            cancel_subscription(self.settings, ws, effective)

        if self._try("cancel", ws, effective, call):
            sub.cancel = effective

    @rule(ws=st.sampled_from(WORKSPACES), plan=st.sampled_from([None, "growth", "scale", "payg"]))
    def assign_plan(self, ws: str, plan: str | None) -> None:
        """The price book's plan for the workspace (undated: prices usage without a
        subscription from now on, for segments not billed yet)."""
        if plan is None:
            self.book.assignments.pop(ws, None)
        else:
            self.book.assignments[ws] = plan
        self.book.version = next(_book_versions)
        write_book(self.home, self.book)
        self.changes += 1
        self.dirty = True

    # -- runs -----------------------------------------------------------------------------
    @precondition(lambda self: self.today < LAST_RUN)
    @rule(
        months=st.integers(0, 3),
        day=st.sampled_from([1, 1, 1, 2, 5, 11, 15, 16, 28, 29]),
        days=st.one_of(st.none(), st.integers(1, 40)),
    )
    def run(self, months: int, day: int, days: int | None) -> None:
        """The nightly run for a later date: a few days on (most close nothing), or a day
        of a later month (a month start, an anchor day...); skipping months is an
        outage, and the run catches up."""
        base = self.today
        if days is not None:
            run_date = base + timedelta(days=days)
        else:
            m = base.month - 1 + months
            run_date = date(base.year + m // 12, m % 12 + 1, day)
            if self.last_run is not None and run_date <= self.last_run:
                run_date = self.last_run + timedelta(days=day)
        self._bill(min(run_date, LAST_RUN))

    @precondition(lambda self: bool(self.run_dates))
    @rule(i=st.integers(0, 100))
    def rerun(self, i: int) -> None:
        """The same date again, or an earlier one. When nothing arrived or changed since a
        run of that date or a later one, it creates nothing (and changes nothing)."""
        dates = sorted(set(self.run_dates))
        run_date = dates[-1] if i % 2 == 0 else dates[(i // 2) % len(dates)]
        quiet = not self.landed and any(
            d >= run_date and mark == self.changes for d, mark in self.run_marks
        )
        count = len(self.model.invoices)
        created = self._bill(run_date)
        if quiet:
            assert created == [], f"a rerun of {run_date} with nothing new created {created}"
            assert len(self.model.invoices) == count, "the model billed on a quiet rerun"

    @precondition(lambda self: any(not inv.void for inv in self.model.invoices))
    @rule(i=st.integers(0, 10_000))
    def void(self, i: int) -> None:
        from billing_batch import void_invoice

        live = [inv for inv in self.model.invoices if not inv.void]
        inv = live[i % len(live)]
        assert inv.actual_id is not None
        note(f"void {inv.actual_id} ({inv.ws} {inv.period})")
        void_invoice(self.settings, inv.actual_id)
        self.model.void(inv)
        self.changes += 1
        self.dirty = True

    @precondition(lambda self: any(not inv.void for inv in self.model.invoices))
    @rule(
        i=st.integers(0, 10_000),
        reason=st.sampled_from(["duplicate", "product_unsatisfactory", "other"]),
    )
    def credit(self, i: int, reason: str) -> None:
        """A money-only credit note (docs/credit-notes.md): a cent of a line of a live
        invoice. It changes nothing the model bills: the invariants then check that no
        run bills the credited usage again and that the audit still balances."""
        from billing_batch.invoicing.credit_notes import CreditLine, issue_credit_note

        live = [inv for inv in self.model.invoices if not inv.void]
        inv = live[i % len(live)]
        assert inv.actual_id is not None
        actual = {x.id: x for x in invoices_of(self.settings)}[inv.actual_id]
        lines = [n for n, ln in enumerate(actual.lines, start=1) if ln.amount >= 1]
        if not lines or actual.due < 1 or self.credits.get(inv.actual_id, 0) >= 20:
            return  # nothing worth a cent of credit here (a valid step that does nothing)
        line = lines[i % len(lines)]
        note(f"credit 0.01 of line {line} of {inv.actual_id} ({reason})")
        cn = issue_credit_note(
            self.settings,
            inv.actual_id,
            reason=reason,
            lines=[CreditLine(line, amount=Decimal("0.01"))],
        )
        self.credits[inv.actual_id] = self.credits.get(inv.actual_id, 0) + 1
        after = {x.id: x for x in invoices_of(self.settings)}[inv.actual_id]
        assert not cn.releases_ledger and after.due == actual.due - cn.total
        self.dirty = True

    # -- after every step -----------------------------------------------------------------
    @invariant()
    def consistent(self) -> None:
        if not self.dirty:
            return  # nothing the checks read has changed since they last passed
        self.dirty = False
        actual = invoices_of(self.settings)
        self._check_state(actual)
        if self.as_of is not None:
            check_audit(self.settings, self.model, self.as_of)


def test_a_few_random_timelines_bill_every_unit_once(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The default suite's pass: a few short timelines (the ``slow`` test runs more)."""
    TimelineMachine.root = tmp_path_factory.mktemp("timeline")
    run_state_machine_as_test(TimelineMachine, settings=QUICK_SETTINGS)


@pytest.mark.slow
def test_random_timelines_bill_every_unit_once(tmp_path_factory: pytest.TempPathFactory) -> None:
    TimelineMachine.root = tmp_path_factory.mktemp("timeline")
    run_state_machine_as_test(TimelineMachine, settings=MACHINE_SETTINGS)


# --- backfill vs a single catch-up -----------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    events: tuple[Event, ...]
    subs: tuple[tuple[str, str, date, int, int, date | None, date | None], ...]
    assignments: tuple[tuple[str, str], ...]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    first, last = date(2023, 12, 1), date(2024, 3, 31)
    span = (last - first).days
    events = []
    for ws in WORKSPACES:
        n = draw(st.integers(0, 12))
        for i in range(n):
            day = first + timedelta(days=draw(st.integers(0, span)))
            if draw(st.booleans()):
                events.append(Event(ws, f"e{i}", "storage", day, draw(gb)))
            else:
                events.append(Event(ws, f"e{i}", "api_calls", day, Decimal(draw(api_quantities))))
    subs = []
    for ws in WORKSPACES:
        if draw(st.booleans()):
            start = first + timedelta(days=draw(st.integers(0, span - 40)))
            anchor = draw(st.sampled_from([1, 15, 28, 10]))
            trial = draw(st.sampled_from([0, 0, 10]))
            change = cancel = None
            if draw(st.booleans()):
                change = start + timedelta(days=draw(st.integers(1, 60)))
            if draw(st.booleans()):
                cancel = (change or start) + timedelta(days=draw(st.integers(1, 60)))
            plan = draw(st.sampled_from(SUB_PLANS))
            subs.append((ws, plan, start, anchor, trial, change, cancel))
    assignments = tuple(
        (ws, draw(st.sampled_from(["growth", "scale"]))) for ws in WORKSPACES if draw(st.booleans())
    )
    return Scenario(tuple(events), tuple(subs), assignments)


def setup_scenario(home: Path, sc: Scenario) -> tuple[Settings, Model]:
    from billing_batch import (
        cancel_subscription,
        change_subscription,
        create_subscription,
    )

    settings = home_settings(home)
    book = Book(DEFAULT_PLANS, "payg", dict(sc.assignments))
    write_book(home, book)
    model = Model(book, WORKSPACES)
    land(home, sc.events)
    for ev in sc.events:
        model.land(ev)
    for ws, plan, start, anchor, trial, change, cancel in sc.subs:
        create_subscription(settings, ws, plan, start, anchor_day=anchor, trial_days=trial)
        sub = model.create_sub(ws, plan, start, anchor, trial)
        if change is not None:
            other = next(p for p in SUB_PLANS if p != plan)
            change_subscription(settings, ws, other, change)
            sub.plans.append((change, other))
        if cancel is not None:
            cancel_subscription(settings, ws, cancel)
            sub.cancel = cancel
    return settings, model


def invoice_table(actual: list[Any]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {
        (inv.workspace_id, _as_date(inv.period_start), _as_date(inv.period_end)): (
            "void" if inv.status == "void" else "live",
            Decimal(inv.subtotal),
            Decimal(inv.total),
            tuple(sorted(actual_lines(inv).items(), key=str)),
        )
        for inv in actual
    }


def test_backfill_equals_single_catch_up(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The same events and subscriptions in two homes: run on the day after every period
    close (what daily runs would bill) vs one catch-up run at the end: the same periods,
    lines and totals, and both the model's."""
    root = tmp_path_factory.mktemp("backfill")
    end = date(2024, 4, 1)

    @BACKFILL_SETTINGS
    @given(sc=scenarios())
    def check(sc: Scenario) -> None:
        note(f"events: {[(e.ws, e.id, e.metric, str(e.day), str(e.quantity)) for e in sc.events]}")
        note(f"subscriptions: {sc.subs}; price book plans: {sc.assignments}")
        daily_home = Homes.fresh(root / "daily")
        settings_a, model_a = setup_scenario(daily_home, sc)
        model_a.ingest()
        dates = sorted(
            {p.end + ONE_DAY for ws in WORKSPACES for p in model_a.periods(ws, end)} | {end}
        )
        note(f"daily-equivalent run dates: {dates}")
        for d in dates:
            before = {inv.id for inv in invoices_of(settings_a)}
            result = bill(settings_a, d)
            assert list(result.failures) == []
            created = model_a.run(d)
            new = [inv for inv in invoices_of(settings_a) if inv.id not in before]
            check_run_invoices(created, new, list(result.invoice_ids), d)
        catch_up_home = Homes.fresh(root / "catch-up")
        settings_b, model_b = setup_scenario(catch_up_home, sc)
        result = bill(settings_b, end)
        assert list(result.failures) == []
        created = model_b.run(end)
        new = invoices_of(settings_b)
        check_run_invoices(created, new, list(result.invoice_ids), end)
        daily, single = invoice_table(invoices_of(settings_a)), invoice_table(new)
        assert set(daily) == set(single), (sorted(daily), sorted(single))
        for key in daily:
            assert daily[key] == single[key], f"{key}: daily {daily[key]} vs catch-up {single[key]}"
        check_exactly_once(model_b, new, end)
        check_audit(settings_b, model_b, end)
        _close_lake_connections()

    check()


def test_model_prices_a_known_month() -> None:
    """The reference model itself, on a hand-computed month (so a model bug cannot hide
    behind an equal bug in the project)."""
    book = Book(DEFAULT_PLANS, "payg", {"ws_b": "growth"})
    model = Model(book, ["ws_a", "ws_b"])
    model.create_sub("ws_a", "growth", date(2024, 1, 10), 1, 0)  # 22 fee days of 31
    model.land(Event("ws_a", "1", "api_calls", date(2024, 1, 5), Decimal(2000)))  # payg
    model.land(Event("ws_a", "2", "api_calls", date(2024, 1, 20), Decimal(5000)))  # growth
    model.land(Event("ws_a", "3", "storage", date(2024, 1, 16), Decimal("31")))  # 16 days
    model.land(Event("ws_b", "1", "api_calls", date(2024, 2, 5), Decimal(500)))
    created = model.run(date(2024, 2, 1))
    assert [(inv.ws, inv.period) for inv in created] == [
        ("ws_a", (date(2024, 1, 1), date(2024, 1, 31)))
    ]
    got = comparable(created[0].lines)
    jan = (date(2024, 1, 1), date(2024, 1, 31))
    s1, s2 = (date(2024, 1, 1), date(2024, 1, 9)), (date(2024, 1, 10), date(2024, 1, 31))
    # growth api_calls: included 1000 x 22/31 = 709.677..., billable 4290.32...:
    # 4000 x 0.02 = 80 + 290.3225... x 0.01 + 5.00 flat = 87.903225... -> 87.90
    # storage: 31 GB x 16 days / 31 = 16 GB-months -> 2 packages of 10 = 4.00
    # fee 99 x 22/31 = 70.258... -> 70.26; minimum 250 x 22/31 = 177.419... -> 177.42,
    # top-up 177.42 - 91.90 = 85.52
    assert got == {
        ("usage", "api_calls", jan, s1, "payg"): (Decimal(2000), Decimal("20.00")),
        ("usage", "api_calls", jan, s2, "growth"): (Decimal(5000), Decimal("87.90")),
        ("usage", "storage", jan, s2, "growth"): (Decimal("16.000000000"), Decimal("4.00")),
        ("base_fee", None, jan, s2, "growth"): (Decimal(22), Decimal("70.26")),
        ("minimum", None, jan, s2, "growth"): (ZERO, Decimal("85.52")),
    }
    # late usage for January, then February closes for ws_b and for ws_a (storage carried)
    model.land(Event("ws_a", "4", "api_calls", date(2024, 1, 25), Decimal(8000)))
    created = model.run(date(2024, 3, 1))
    assert [(inv.ws, inv.period[0]) for inv in created] == [
        ("ws_a", date(2024, 2, 1)),
        ("ws_b", date(2024, 2, 1)),
    ]
    late = {k: v for k, v in comparable(created[0].lines).items() if k[0].startswith("late_")}
    # 13000 calls: billable 12290.32...: 80 + 80 + 5 + 290.32... x 0.005 = 166.451... -> 166.45
    # late usage 166.45 - 87.90 = 78.55; the top-up falls to max(0, 177.42 - 170.45) = 6.97
    assert late == {
        ("late_usage", "api_calls", jan, s2, "growth"): (Decimal(8000), Decimal("78.55")),
        ("late_minimum", None, jan, s2, "growth"): (ZERO, Decimal("6.97") - Decimal("85.52")),
    }
    # ws_b: growth through the price book, no subscription: usage only, within included
    assert comparable(created[1].lines) == {
        (
            "usage",
            "api_calls",
            (date(2024, 2, 1), date(2024, 2, 29)),
            (date(2024, 2, 1), date(2024, 2, 29)),
            "growth",
        ): (Decimal(500), ZERO)
    }
    assert model.unbilled_of("ws_a", date(2024, 3, 1)) == []


def test_model_periods_follow_anchors_and_cancellations() -> None:
    model = Model(Book(DEFAULT_PLANS, "payg"), ["ws"])
    sub = model.create_sub("ws", "growth", date(2024, 1, 10), 15, 7)
    sub.cancel = date(2024, 3, 20)
    model.land(Event("ws", "1", "api_calls", date(2023, 12, 20), Decimal(1)))
    model.ingest()
    got = [(p.start, p.end, p.nominal_days) for p in model.periods("ws", date(2024, 5, 1))]
    assert got == [
        (date(2023, 12, 1), date(2023, 12, 31), 31),
        (date(2024, 1, 1), date(2024, 1, 9), 31),  # cut: the subscription's anchor is 15
        (date(2024, 1, 10), date(2024, 1, 14), 31),  # nominal 2023-12-15..2024-01-14
        (date(2024, 1, 15), date(2024, 2, 14), 31),
        (date(2024, 2, 15), date(2024, 3, 14), 29),
        (date(2024, 3, 15), date(2024, 3, 19), 31),  # the final period
        (date(2024, 3, 20), date(2024, 3, 31), 31),  # calendar again
        (date(2024, 4, 1), date(2024, 4, 30), 30),
    ]
    second = model.periods("ws", date(2024, 5, 1))[2]
    seg = model.segments("ws", second)
    assert [(s.start, s.end, s.fee_days) for s in seg] == [
        (date(2024, 1, 10), date(2024, 1, 14), 0)
    ]
    third = model.periods("ws", date(2024, 5, 1))[3]
    assert [s.fee_days for s in model.segments("ws", third)] == [31 - 2]  # trial to 01-16


def test_model_void_releases_rows_and_keeps_money_exact() -> None:
    """A void releases its invoice's rows; the period is billed again for what the other
    live invoices do not carry, and its invoices add up to one on-time invoice."""
    model = Model(Book(DEFAULT_PLANS, "payg"), ["ws"])
    model.create_sub("ws", "growth", date(2024, 1, 1), 1, 0)
    model.land(Event("ws", "1", "api_calls", date(2024, 1, 5), Decimal(500)))  # included
    (jan_inv,) = model.run(date(2024, 2, 1))
    model.land(Event("ws", "2", "api_calls", date(2024, 1, 6), Decimal(1000)))  # late
    (feb_inv,) = model.run(date(2024, 3, 1))
    jan = (date(2024, 1, 1), date(2024, 1, 31))
    late = {k: v for k, v in comparable(feb_inv.lines).items() if k[2] == jan}
    # 1,500 calls, 1,000 included: 500 x 0.02 = 10.00; the top-up falls by as much
    assert late == {
        ("late_usage", "api_calls", jan, jan, "growth"): (Decimal(1000), Decimal("10.00")),
        ("late_minimum", None, jan, jan, "growth"): (ZERO, Decimal("-10.00")),
    }
    model.void(jan_inv)
    assert model.refuses("ws", date(2024, 1, 20))  # February's invoice still covers it
    (again,) = model.run(date(2024, 3, 2))
    assert again.period == jan
    # what February's invoice does not carry: 500 units (priced 0.00: 10.00 of the 1,500
    # is already billed), the fee, and the top-up to 240.00 (-10.00 already billed)
    assert comparable(again.lines) == {
        ("usage", "api_calls", jan, jan, "growth"): (Decimal(500), ZERO),
        ("base_fee", None, jan, jan, "growth"): (Decimal(31), Decimal("99.00")),
        ("minimum", None, jan, jan, "growth"): (ZERO, Decimal("250.00")),
    }
    live = [ln for inv in model.invoices if not inv.void for ln in inv.lines if ln.period == jan]
    assert sum((ln.amount for ln in live), ZERO) == Decimal("10.00") + 99 + 240
