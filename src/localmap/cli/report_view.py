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
            rt = RichTable(title=tab.title, title_justify="left")
            for h in tab.headers:
                rt.add_column(h)
            for row in tab.rows:
                rt.add_row(*[safe(str(c)) for c in row])
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
