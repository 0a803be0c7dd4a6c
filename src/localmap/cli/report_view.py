"""Print a :class:`~localmap.report.model.Report` on the terminal with rich.

Models nothing of the kernel. Facts and tables are printed; figures are HTML-only and are
listed by title so the reader knows what ``--html`` adds.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table as RichTable

from localmap.cli.console import safe, stdout_console
from localmap.report.model import Report
from localmap.units import fmt_seconds


WRAP_AT = 40     # a cell longer than this wraps instead of widening its column


def column_groups(headers: list[str], rows: list[list], width: int) -> list[list[int]]:
    """Split the columns into groups that each fit ``width`` terminal cells with the first column
    repeated, so that no cell is cut to "…". One group when the table fits as it is."""
    need = []
    for i, h in enumerate(headers):
        cells = [len(str(r[i])) for r in rows if i < len(r)]
        need.append(min(WRAP_AT, max([len(h), *cells])) + 3)   # padding and the border
    if sum(need) + 1 <= width or len(headers) <= 2:
        return [list(range(len(headers)))]
    groups: list[list[int]] = []
    cur: list[int] = []
    used = need[0] + 1
    for i in range(1, len(headers)):
        if cur and used + need[i] > width:
            groups.append(cur)
            cur, used = [], need[0] + 1
        cur.append(i)
        used += need[i]
    groups.append(cur)
    return [[0, *g] for g in groups]


def fitted_tables(title: str, headers: list[str], rows: list[list], width: int) -> list[RichTable]:
    """The table as rich tables that fit ``width``: split by columns (first column repeated and
    the part named in the title) rather than truncated."""
    groups = column_groups(headers, rows, width)
    out = []
    for n, cols in enumerate(groups, 1):
        part = f" ({n}/{len(groups)})" if len(groups) > 1 else ""
        rt = RichTable(title=safe(title) + part, title_justify="left")
        for i in cols:
            rt.add_column(safe(headers[i]), overflow="fold")
        for row in rows:
            rt.add_row(*[safe(str(row[i])) if i < len(row) else "" for i in cols])
        out.append(rt)
    return out


def print_report(report: Report, console: Console | None = None) -> None:
    con = console or stdout_console()
    con.rule(f"[bold]{safe(report.title)}")
    con.print(f"{safe(report.subject)}: {safe(report.bundle)}")
    for s in report.sections:
        con.print()
        con.rule(f"[bold cyan]{safe(s.title)}", align="left")
        if s.facts:
            t = RichTable(show_header=False, box=None, pad_edge=False)
            t.add_column(style="bold")
            t.add_column()
            for k, v in s.facts:
                t.add_row(safe(k), safe(v))
            con.print(t)
        for tab in s.tables:
            for rt in fitted_tables(tab.title, tab.headers, tab.rows, con.width):
                con.print(rt)
        for f in s.figures:
            con.print(f"[dim]figure (HTML report): {safe(f.title)}[/dim]")
        for n in s.notes:
            con.print(f"[dim]{safe(n)}[/dim]")
    if report.omitted:
        con.print()
        con.rule("[bold red]Not in this report", align="left")
        for title, reason in report.omitted:
            con.print(f"{safe(title)}: {safe(reason)}")
    con.print()
    con.print(f"evaluated in {fmt_seconds(report.seconds, 1)}")
