"""The results table: printed with rich, and written as Markdown to docs/benchmarks.md."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Row:
    """One figure: what was measured, its value, the goal, and whether it was met.

    `met` is None for figures reported without a goal (context for another row).
    """

    benchmark: str
    figure: str
    value: str
    goal: str = "—"
    met: bool | None = None

    @property
    def verdict(self) -> str:
        return {True: "yes", False: "NO", None: "—"}[self.met]


def missing(benchmark: str, figure: str, goal: str, why: str) -> Row:
    """A row for a figure that could not be measured (the table still names it)."""
    return Row(benchmark, figure, f"n/a ({why})", goal, None)


def print_table(rows: Sequence[Row], console: Console | None = None) -> None:
    table = Table(title="gwsync benchmarks")
    for name in ("benchmark", "figure", "value", "goal", "met?"):
        table.add_column(name, overflow="fold")
    colours = {True: "green", False: "red", None: "dim"}
    for row in rows:
        table.add_row(row.benchmark, row.figure, row.value, row.goal,
                      f"[{colours[row.met]}]{row.verdict}[/]")
    (console or Console()).print(table)


def markdown(rows: Sequence[Row], machine: Mapping[str, str], setup: Mapping[str, str],
             notes: Sequence[str]) -> str:
    lines = ["# Benchmarks", "",
             "Written by `./bin/bench` (bench/run.py) at the end of its last run; "
             "every figure is measured against the Google emulator running in its own "
             "process, with real `gwsync worker` processes, Redis and the database named below.",
             "", "## Machine", "", "| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in machine.items()]
    lines += ["", "## Set-up", "", "| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in setup.items()]
    lines += ["", "## Results", "", "| benchmark | figure | value | goal | met? |",
              "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r.benchmark} | {r.figure} | {r.value} | {r.goal} | {r.verdict} |"
              for r in rows]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
