"""What a delivery pass reports: one :class:`AttemptResult` per attempt, the counts of
a :class:`DeliveryReport` (printed by ``billing-batch webhooks deliver``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class AttemptResult:
    """One recorded attempt of one pass."""

    event_id: str
    endpoint_id: str
    event_type: str
    attempt_no: int
    #: delivered | retry_scheduled | failed | endpoint_disabled
    outcome: str
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0
    next_attempt_at: datetime | None = None


@dataclass
class DeliveryReport:
    """The outcome of one delivery pass."""

    #: Delivery rows created in this pass (event × endpoint).
    scheduled: int = 0
    #: Attempts recorded (including refused destinations, which send nothing).
    attempted: int = 0
    delivered: int = 0
    #: Failed attempts with a next attempt scheduled (not an error of the pass).
    retry_scheduled: int = 0
    #: Deliveries given up in this pass (too old, or their endpoint answered 410).
    failed: int = 0
    #: Pending deliveries stopped because their endpoint was disabled in this pass.
    stopped: int = 0
    disabled_endpoints: list[str] = field(default_factory=list)
    results: list[AttemptResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        problems = [r for r in self.results if r.outcome != "delivered"]
        out: dict[str, Any] = {
            "scheduled": self.scheduled,
            "attempted": self.attempted,
            "delivered": self.delivered,
            "retry_scheduled": self.retry_scheduled,
            "failed": self.failed,
            "stopped": self.stopped,
            "disabled_endpoints": list(self.disabled_endpoints),
            "problems": [
                {
                    "event_id": r.event_id,
                    "endpoint_id": r.endpoint_id,
                    "type": r.event_type,
                    "attempt_no": r.attempt_no,
                    "outcome": r.outcome,
                    "status_code": r.status_code,
                    "error": r.error,
                    "next_attempt_at": r.next_attempt_at,
                }
                for r in problems
            ],
        }
        if self.retry_scheduled:
            out["note"] = (
                f"{self.retry_scheduled} delivery attempt(s) failed at the receiver and "
                "will be retried by a later pass (see problems)"
            )
        return out


__all__ = ["AttemptResult", "DeliveryReport"]
