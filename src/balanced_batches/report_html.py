"""The report as one self-contained HTML page: styles inline, images as base64 data URIs.

The page needs nothing but itself: it opens from disk, from a web server or as an e-mail
attachment. Every number of the totals table carries its raw value in `data-value`, so
scripts (and the tests) can read it back without parsing formatted text.
"""

from __future__ import annotations

import base64
import html
import struct
from dataclasses import dataclass, field
from pathlib import Path

_STYLE = """
body { font-family: "Helvetica Neue", Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1500px; padding: 0 1.5em 3em; color: #222; background: #fff; }
header { border-bottom: 2px solid #5790fc; margin-bottom: 1em; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
h3 { margin: 1.2em 0 0.4em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; vertical-align: top; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) { background: #f7f7f7; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr));
           gap: 1em; }
.figures.wide { grid-template-columns: 1fr; }
.figures.wide figure img { width: auto; max-width: 100%; }
figure { margin: 0; }
figure img { width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
.missing { background: #fff4e0; border-left: 4px solid #f89c20; padding: 0.5em 1em; }
.problem { background: #fdecea; border-left: 4px solid #e42536; padding: 0.5em 1em; }
pre { background: #f4f4f4; padding: 1em; overflow-x: auto; font-size: 0.85em; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


@dataclass(frozen=True)
class Image:
    """A PNG of the report, shown with a caption under a group heading."""

    path: Path
    caption: str
    group: str = ""


@dataclass(frozen=True)
class TotalRow:
    """One line of the totals table: a stable key, a label, the raw value and how it reads."""

    key: str
    label: str
    value: int | float
    text: str | None = None


@dataclass(frozen=True)
class Section:
    """A titled part of the page: text, images, an optional table, or what to run to get it."""

    anchor: str
    title: str
    text: str = ""
    images: tuple[Image, ...] = ()
    wide: bool = False
    table: tuple[tuple[str, ...], ...] = ()  # the first row is the header
    missing: str = ""
    problems: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class ReportPage:
    """Everything the page shows."""

    title: str
    subtitle: str
    totals: tuple[TotalRow, ...]
    sections: tuple[Section, ...]
    bad_files: tuple[tuple[str, str], ...]
    config_yaml: str
    config_source: str


def data_uri(data: bytes) -> str:
    """`data:image/png;base64,...` of a PNG file's bytes."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, from its IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _totals(rows: tuple[TotalRow, ...]) -> str:
    lines = ['<table id="totals">']
    for row in rows:
        shown = row.text if row.text is not None else f"{row.value}"
        lines.append(
            f'<tr data-key="{_e(row.key)}"><th>{_e(row.label)}</th>'
            f'<td class="number" data-value="{_e(row.value)}">{_e(shown)}</td></tr>'
        )
    lines.append("</table>")
    return "\n".join(lines)


def _table(rows: tuple[tuple[str, ...], ...], table_id: str) -> str:
    if not rows:
        return ""
    header, *body = rows
    lines = [f'<table id="{_e(table_id)}">', "<tr>" + "".join(f"<th>{_e(c)}</th>" for c in header)]
    for row in body:
        cells = "".join(
            f'<td class="number">{_e(c)}</td>' if _is_number(c) else f"<td>{_e(c)}</td>"
            for c in row
        )
        lines.append(f"<tr>{cells}</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _images(images: tuple[Image, ...], wide: bool) -> str:
    lines: list[str] = []
    group: str | None = None
    css = "figures wide" if wide else "figures"
    for image in images:
        if image.group != group:
            if group is not None:
                lines.append("</div>")
            if image.group:
                lines.append(f"<h3>{_e(image.group)}</h3>")
            lines.append(f'<div class="{css}">')
            group = image.group
        data = image.path.read_bytes()
        width, height = png_size(data)
        # the size keeps the layout stable while images are decoded
        lines.append(
            f'<figure><img src="{data_uri(data)}" alt="{_e(image.caption)}" '
            f'width="{width}" height="{height}" data-file="{_e(image.path.name)}">'
            f"<figcaption>{_e(image.caption)} ({_e(image.path.name)})</figcaption></figure>"
        )
    if group is not None:
        lines.append("</div>")
    return "\n".join(lines)


def _section(section: Section) -> str:
    parts = [f'<section id="{_e(section.anchor)}">', f"<h2>{_e(section.title)}</h2>"]
    if section.text:
        parts.append(f"<p>{_e(section.text)}</p>")
    parts.extend(f'<p class="problem">{_e(problem)}</p>' for problem in section.problems)
    if section.missing:
        parts.append(f'<p class="missing">{_e(section.missing)}</p>')
    parts.append(_table(section.table, f"{section.anchor}-table"))
    parts.append(_images(section.images, section.wide))
    parts.append("</section>")
    return "\n".join(part for part in parts if part)


def render(page: ReportPage) -> str:
    """The complete HTML document."""
    anchors = [("totals", "Totals")] + [(s.anchor, s.title) for s in page.sections]
    anchors += [("files", "Skipped files"), ("configuration", "Configuration")]
    nav = " ".join(f'<a href="#{_e(anchor)}">{_e(title)}</a>' for anchor, title in anchors)
    bad = (
        _table((("file", "reason"), *page.bad_files), "bad-files")
        if page.bad_files
        else "<p>No file was skipped.</p>"
    )
    body = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(page.title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<header><h1>{_e(page.title)}</h1><p>{_e(page.subtitle)}</p><nav>{nav}</nav></header>",
        '<section id="totals-section"><h2 id="totals">Totals</h2>',
        _totals(page.totals),
        "</section>",
        *(_section(section) for section in page.sections),
        '<section id="files-section"><h2 id="files">Skipped files</h2>',
        bad,
        "</section>",
        '<section id="configuration-section"><h2 id="configuration">Configuration</h2>',
        f"<p>{_e(page.config_source)}</p>",
        f'<pre id="config">{_e(page.config_yaml)}</pre>',
        "</section>",
        "</body>",
        "</html>",
    ]
    return "\n".join(body) + "\n"
