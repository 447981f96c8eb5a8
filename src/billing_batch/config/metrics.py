"""The metric catalogue: which metrics exist and how their events aggregate.

The catalogue is ``[metrics.<name>]`` of the settings: the built-in metrics
(:data:`DEFAULT_METRICS`, the seed's four), extended or redefined by the TOML file
(:func:`extend_catalogue`). The rollup, ``get_usage``, the price book's validation and
the invoice lines all read it from ``Settings.metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import field_validator

from ._model import Model

Aggregation = Literal["sum", "gauge", "count", "max", "latest", "unique_count"]


class MetricDef(Model):
    """One metric of the catalogue and how its events aggregate.

    * ``sum``: a day is the sum of its events; a period the sum of its days.
    * ``gauge``: a day is its largest reading; a period is the mean over every day of
      the period, a day without a reading carrying the last known value forward (0
      before any reading ever). For ``storage`` in GB that mean is GB-months.
    * ``count``: a day is the number of its events; a period the sum of its days.
    * ``max``: a day is its largest value; a period the largest of its days.
    * ``latest``: a day is the value of its last event (by timestamp); a period the
      value of its last day with an event.
    * ``unique_count``: the number of distinct values of ``properties.<property>``
      over the day, and over the whole period (not a sum of days).
    """

    display_name: str
    unit: str = "count"
    aggregation: Aggregation = "sum"
    #: Quantities must be whole numbers (count metrics).
    whole: bool = True
    #: For ``unique_count``: the property whose distinct values are counted.
    property: str | None = None
    #: How the period total is named on an invoice ("GB-months").
    period_unit: str | None = None

    @field_validator("property")
    @classmethod
    def _property_name(cls, value: str | None) -> str | None:
        if value is not None and not value.replace("_", "").replace("-", "").isalnum():
            raise ValueError("property must be letters, digits, '_' or '-'")
        return value


DEFAULT_METRICS: dict[str, MetricDef] = {
    "api_calls": MetricDef(display_name="API Calls", unit="count", aggregation="sum"),
    "contracts": MetricDef(display_name="Contracts", unit="count", aggregation="sum"),
    "kyc_checks": MetricDef(display_name="KYC Checks", unit="count", aggregation="sum"),
    "storage": MetricDef(
        display_name="Storage",
        unit="GB",
        aggregation="gauge",
        whole=False,
        period_unit="GB-months",
    ),
}


def extend_catalogue(defined: Mapping[str, Any]) -> dict[str, Any]:
    """The catalogue a settings file's ``[metrics]`` tables make: the built-in metrics,
    extended (a new name) or redefined (a built-in name) by the file's (raw values,
    validated with the rest of the settings)."""
    metrics: dict[str, Any] = {k: v.model_dump() for k, v in DEFAULT_METRICS.items()}
    metrics.update(defined)
    return metrics


__all__ = ["DEFAULT_METRICS", "Aggregation", "MetricDef", "extend_catalogue"]
