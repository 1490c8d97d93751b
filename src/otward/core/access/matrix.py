"""The roles x assets/functions matrix of an access model, as the console shows it.

Pure: the model in, rows of cells out. A cell says whether a role may use a function of an asset
always, only when a schedule holds (with the schedule in words, "Mon-Fri 08:00-17:00", so that
the condition is readable as text and not only as a colour), or not at all. Several grants for the
same cell combine: one without a condition makes it always allowed, otherwise every condition is
listed. People's own state (disabled, validity dates) is not part of the matrix: it is per person.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from otward.core.access.model import OWN_SHIFT, WEEKDAYS, AccessModel, Asset, Schedule, format_minutes

__all__ = [
    "AccessMatrix",
    "CellState",
    "MatrixCell",
    "MatrixColumn",
    "MatrixRow",
    "build_matrix",
    "describe_days",
    "describe_schedule",
]

_DAY_NAMES = {
    "mon": "Mon",
    "tue": "Tue",
    "wed": "Wed",
    "thu": "Thu",
    "fri": "Fri",
    "sat": "Sat",
    "sun": "Sun",
}


class CellState(enum.Enum):
    """What a role may do with one function of one asset."""

    ALLOWED = "allowed"
    CONDITIONAL = "conditional"
    DENIED = "denied"


@dataclass(frozen=True)
class MatrixColumn:
    """One function of one asset."""

    asset: str
    function: str


@dataclass(frozen=True)
class MatrixCell:
    """A role's right on one column; ``conditions`` in words, ``grants`` the ids that give it."""

    state: CellState
    conditions: tuple[str, ...] = ()
    grants: tuple[str, ...] = ()


@dataclass(frozen=True)
class MatrixRow:
    role: str
    external: bool
    cells: tuple[MatrixCell, ...]


@dataclass(frozen=True)
class AccessMatrix:
    """Rows (roles) by columns (asset functions); ``assets`` in column order with their functions."""

    assets: tuple[Asset, ...]
    columns: tuple[MatrixColumn, ...]
    rows: tuple[MatrixRow, ...]


def describe_days(days: Sequence[str]) -> str:
    """Weekdays in words: runs of three or more as a range ("Mon-Fri", with an en dash), "daily" for all."""
    ordered = [day for day in WEEKDAYS if day in days]
    if len(ordered) == len(WEEKDAYS):
        return "daily"
    runs: list[list[str]] = []
    for day in ordered:
        if runs and WEEKDAYS.index(day) == WEEKDAYS.index(runs[-1][-1]) + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts: list[str] = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{_DAY_NAMES[run[0]]}\u2013{_DAY_NAMES[run[-1]]}")
        else:
            parts.extend(_DAY_NAMES[day] for day in run)
    return ", ".join(parts)


def describe_schedule(schedule: Schedule) -> str:
    """A schedule in words, e.g. "Mon-Fri 08:00-17:00" or "daily 22:00-06:00 (next day)"."""
    days = describe_days(schedule.days)
    if schedule.start == 0 and schedule.end == 24 * 60:
        return f"{days}, all day"
    hours = f"{format_minutes(schedule.start)}\u2013{format_minutes(schedule.end)}"
    return f"{days} {hours}" + (" (next day)" if schedule.overnight else "")


def _condition(model: AccessModel, when: str) -> str:
    if when == OWN_SHIFT:
        return "own shift"
    schedule = model.schedule(when)
    return describe_schedule(schedule) if schedule is not None else f"schedule {when}"


def build_matrix(model: AccessModel, assets: Iterable[str] | None = None) -> AccessMatrix:
    """The matrix of every role over ``assets`` (ids; all of the model's, in model order, if None).

    Unknown asset ids are skipped: the caller picks them from the model it passed.
    """
    if assets is None:
        chosen = model.assets
    else:
        wanted = set(assets)
        chosen = tuple(asset for asset in model.assets if asset.id in wanted)
    columns = tuple(MatrixColumn(asset.id, function) for asset in chosen for function in asset.functions)
    index = {(column.asset, column.function): n for n, column in enumerate(columns)}
    rows: list[MatrixRow] = []
    for role in model.roles:
        always: list[set[str]] = [set() for _ in columns]
        when: list[dict[str, set[str]]] = [{} for _ in columns]
        for grant in model.grants:
            if grant.role != role.id:
                continue
            for asset_id in grant.assets:
                for function in grant.functions:
                    position = index.get((asset_id, function))
                    if position is None:
                        continue
                    if grant.when is None:
                        always[position].add(grant.id)
                    else:
                        text = _condition(model, grant.when)
                        when[position].setdefault(text, set()).add(grant.id)
        cells = []
        for position in range(len(columns)):
            if always[position]:
                cells.append(MatrixCell(CellState.ALLOWED, (), tuple(sorted(always[position]))))
            elif when[position]:
                conditions = tuple(sorted(when[position]))
                grant_ids = tuple(sorted(set().union(*when[position].values())))
                cells.append(MatrixCell(CellState.CONDITIONAL, conditions, grant_ids))
            else:
                cells.append(MatrixCell(CellState.DENIED))
        rows.append(MatrixRow(role.id, role.external, tuple(cells)))
    return AccessMatrix(assets=tuple(chosen), columns=columns, rows=tuple(rows))
