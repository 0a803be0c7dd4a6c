"""The report's document model: sections of facts, tables and figures, rendered twice.

Models nothing of the kernel. :mod:`localmap.report.evaluate` fills a :class:`Report` from the
model's real state; :mod:`localmap.cli.report_view` prints it with rich and
:mod:`localmap.report.html` writes it as one self-contained HTML file. A section whose input
the bundle lacks is recorded in ``Report.omitted`` with the reason, never faked.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    id: str
    title: str
    svg: str
    caption: str = ""
    data: dict = field(default_factory=dict)  # the numbers drawn (series name -> points), for tests


@dataclass
class Section:
    id: str
    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Report:
    title: str
    bundle: str
    sections: list[Section] = field(default_factory=list)
    omitted: list[tuple[str, str]] = field(default_factory=list)  # (section title, reason)
    seconds: float = 0.0
    subject: str = "bundle"                # what ``bundle`` names (a fleet report: its sources)
    command: str = "localmap evaluate"     # the command that made the report

    def section(self, sid: str) -> Section | None:
        return next((s for s in self.sections if s.id == sid), None)

    @property
    def figures(self) -> list[Figure]:
        return [f for s in self.sections for f in s.figures]
