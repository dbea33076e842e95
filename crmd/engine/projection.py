"""When a vehicle will have driven so far, projected from its mileage history (P12)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime, timedelta

# Readings closer together than this say too little about how much the car is driven.
MIN_SPAN = timedelta(days=30)


def daily_km(readings: Sequence[tuple[datetime, int]]) -> float | None:
    """Average km per day between the first and the last odometer reading, if meaningful."""
    if len(readings) < 2:
        return None
    ordered = sorted(readings)
    (first_at, first_km), (last_at, last_km) = ordered[0], ordered[-1]
    span = last_at - first_at
    if span < MIN_SPAN or last_km <= first_km:
        return None
    return (last_km - first_km) / (span / timedelta(days=1))


def km_reached_on(start: date, km: int, readings: Sequence[tuple[datetime, int]]) -> date | None:
    """The day a vehicle is projected to have driven `km` more after `start`, if knowable."""
    rate = daily_km(readings)
    if rate is None:
        return None
    return start + timedelta(days=math.ceil(km / rate))
