"""Write a :class:`~localmap.report.model.Report` as one self-contained HTML file.

Models nothing of the kernel. Everything is inline (CSS, SVG figures); the page loads no script,
font, image or style sheet from anywhere, so it opens offline and can be attached to a mail.
Sections carry ``id="sec-<id>"`` and figures ``data-figure="<id>"`` for navigation and tests.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from localmap.errors import LocalmapError
from localmap.fileio import write_atomic
from localmap.report.model import Report

CSS = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.2em .6em;
text-align:left;font-size:.92em}th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:
tabular-nums}dl.facts{display:grid;grid-template-columns:max-content auto;gap:.15em 1.2em}
dl.facts dt{font-weight:600}dl.facts dd{margin:0}figure{margin:1em 0}figcaption{font-size:.9em;
color:#555;max-width:900px}.note{color:#555;font-size:.92em}.omitted{color:#a33}
nav a{margin-right:1em}code{background:#f4f4f4;padding:0 .2em}
"""


def _cell(v: str) -> str:
    s = str(v)
    num = s.replace(",", "").replace(".", "", 1).replace("%", "").replace(" ", "").lstrip("+-")
    cls = ' class="num"' if num[:1].isdigit() else ""
    return f"<td{cls}>{escape(s)}</td>"


def render(report: Report) -> str:
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>{escape(report.title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{escape(report.title)}</h1>",
             f"<p>{escape(report.subject.capitalize())}: <code>{escape(report.bundle)}</code> "
             f"&middot; evaluated in {report.seconds:.1f} s by "
             f"<code>{escape(report.command)}</code>.</p>",
             "<nav>" + "".join(f'<a href="#sec-{escape(s.id)}">{escape(s.title)}</a>'
                               for s in report.sections) + "</nav>"]
    for s in report.sections:
        parts.append(f'<section id="sec-{escape(s.id)}"><h2>{escape(s.title)}</h2>')
        if s.facts:
            parts.append('<dl class="facts">' + "".join(
                f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in s.facts) + "</dl>")
        for t in s.tables:
            parts.append(f"<h3>{escape(t.title)}</h3><table><thead><tr>"
                         + "".join(f"<th>{escape(h)}</th>" for h in t.headers) + "</tr></thead><tbody>")
            parts.extend("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in t.rows)
            parts.append("</tbody></table>")
        for f in s.figures:
            parts.append(f'<figure id="fig-{escape(f.id)}"><h3>{escape(f.title)}</h3>{f.svg}'
                         f"<figcaption>{escape(f.caption)}</figcaption></figure>")
        for n in s.notes:
            parts.append(f'<p class="note">{escape(n)}</p>')
        parts.append("</section>")
    if report.omitted:
        parts.append('<section id="sec-omitted"><h2>Not in this report</h2><ul>')
        parts.extend(f'<li class="omitted">{escape(t)}: {escape(r)}</li>' for t, r in report.omitted)
        parts.append("</ul></section>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write(report: Report, out_dir: Path | str) -> Path:
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "index.html"
        write_atomic(path, render(report))
    except OSError as exc:
        raise LocalmapError(f"cannot write the HTML report: {exc.strerror}", out_dir) from None
    return path
