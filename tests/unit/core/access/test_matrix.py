"""The roles x asset functions matrix built from the chemical-plant example and small models."""

from __future__ import annotations

from pathlib import Path

import pytest

from otward.core.access.matrix import (
    CellState,
    build_matrix,
    describe_days,
    describe_schedule,
)
from otward.core.access.model import Schedule, parse_access_yaml

EXAMPLE = (Path(__file__).parents[4] / "examples" / "chemical-plant.yaml").read_text()


def _cell(matrix, role, asset, function):  # type: ignore[no-untyped-def]
    row = next(r for r in matrix.rows if r.role == role)
    position = next(n for n, c in enumerate(matrix.columns) if c.asset == asset and c.function == function)
    return row.cells[position]


@pytest.mark.parametrize(
    ("days", "text"),
    [
        (("mon", "tue", "wed", "thu", "fri"), "Mon\u2013Fri"),
        (("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "daily"),
        (("sat", "sun"), "Sat, Sun"),
        (("mon", "wed", "thu", "fri"), "Mon, Wed\u2013Fri"),
        (("tue",), "Tue"),
    ],
    ids=["weekdays", "all", "weekend", "gap", "one"],
)
def test_days_in_words(days: tuple[str, ...], text: str) -> None:
    assert describe_days(days) == text


@pytest.mark.parametrize(
    ("schedule", "text"),
    [
        (Schedule("b", ("mon", "tue", "wed", "thu", "fri"), 480, 1020), "Mon\u2013Fri 08:00\u201317:00"),
        (
            Schedule("n", ("mon", "tue", "wed", "thu", "fri", "sat", "sun"), 1320, 360),
            "daily 22:00\u201306:00 (next day)",
        ),
        (Schedule("m", ("sat", "sun"), 0, 1440), "Sat, Sun, all day"),
    ],
    ids=["business", "overnight", "whole-days"],
)
def test_schedule_in_words(schedule: Schedule, text: str) -> None:
    assert describe_schedule(schedule) == text


def test_example_matrix_has_every_role_and_asset_function() -> None:
    model = parse_access_yaml(EXAMPLE)
    matrix = build_matrix(model)
    assert [row.role for row in matrix.rows] == [role.id for role in model.roles]
    assert len(matrix.columns) == sum(len(asset.functions) for asset in model.assets)
    assert all(len(row.cells) == len(matrix.columns) for row in matrix.rows)
    assert next(r for r in matrix.rows if r.role == "auditor").external


def test_example_cells_allowed_conditional_denied() -> None:
    matrix = build_matrix(parse_access_yaml(EXAMPLE))
    manager = _cell(matrix, "plant-manager", "reactor-1", "start")
    assert manager.state is CellState.ALLOWED
    assert manager.grants == ("plant-manager-2",)
    cfo_hall = _cell(matrix, "cfo", "production-hall", "enter")
    assert cfo_hall.state is CellState.CONDITIONAL
    assert cfo_hall.conditions == ("Mon\u2013Fri 08:00\u201317:00",)
    operator = _cell(matrix, "operator", "reactor-1", "set-parameters")
    assert operator.state is CellState.CONDITIONAL
    assert operator.conditions == ("own shift",)
    service = _cell(matrix, "service-it", "mixer-2", "maintenance-mode")
    assert service.conditions == ("Sat, Sun, all day",)
    assert _cell(matrix, "cfo", "reactor-1", "start").state is CellState.DENIED
    assert _cell(matrix, "cleaning", "erp", "view").state is CellState.DENIED


def test_an_unconditional_grant_wins_and_conditions_combine() -> None:
    model = parse_access_yaml(
        """
site: s
timezone: UTC
schedules:
  early: {days: [mon], from: "06:00", to: "14:00"}
  late: {days: [mon], from: "14:00", to: "22:00"}
assets:
  press: {kind: machine, functions: [start, stop]}
roles:
  r: {}
grants:
  r:
    - {assets: [press], functions: [start], when: early}
    - {assets: [press], functions: [start], when: late}
    - {assets: [press], functions: [stop], when: early}
    - {assets: [press], functions: [stop]}
"""
    )
    matrix = build_matrix(model)
    start = _cell(matrix, "r", "press", "start")
    assert start.state is CellState.CONDITIONAL
    assert start.conditions == ("Mon 06:00\u201314:00", "Mon 14:00\u201322:00")
    assert start.grants == ("r-1", "r-2")
    stop = _cell(matrix, "r", "press", "stop")
    assert stop.state is CellState.ALLOWED
    assert stop.grants == ("r-4",)


def test_only_the_chosen_assets_become_columns() -> None:
    model = parse_access_yaml(EXAMPLE)
    matrix = build_matrix(model, ["erp", "no-such-asset", "main-gate"])
    assert [asset.id for asset in matrix.assets] == ["main-gate", "erp"]
    assert [(c.asset, c.function) for c in matrix.columns] == [
        ("main-gate", "enter"),
        ("erp", "view"),
        ("erp", "approve-payments"),
    ]
    assert build_matrix(model, []).columns == ()
