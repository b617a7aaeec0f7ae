"""The ORM models' tables, for the Core statements the store builds (one handle each)."""

from __future__ import annotations

from typing import cast

from sqlalchemy import String, Table

from app.store.models import (
    BacktestRow,
    CallbackRow,
    CounterHourRow,
    CounterRow,
    StatsCountryHourRow,
    StatsHourRow,
    StatsHourStateRow,
    StatsRangeHourRow,
    StatsShadowHourRow,
    VerificationMatchRow,
    VerificationRow,
)

backtests = cast(Table, BacktestRow.__table__)
callbacks = cast(Table, CallbackRow.__table__)
counter_hours = cast(Table, CounterHourRow.__table__)
counters = cast(Table, CounterRow.__table__)
country_rollup = cast(Table, StatsCountryHourRow.__table__)
matches = cast(Table, VerificationMatchRow.__table__)
rollup = cast(Table, StatsHourRow.__table__)
rollup_hours = cast(Table, StatsHourStateRow.__table__)
range_rollup = cast(Table, StatsRangeHourRow.__table__)
shadow_rollup = cast(Table, StatsShadowHourRow.__table__)
verifications = cast(Table, VerificationRow.__table__)


def string_length(table: Table, column: str) -> int:
    """The length of a String(n) column (what PostgreSQL refuses beyond)."""
    kind = table.c[column].type
    if not isinstance(kind, String) or kind.length is None:
        raise TypeError(f"{table.name}.{column} is not a String(n)")
    return kind.length
