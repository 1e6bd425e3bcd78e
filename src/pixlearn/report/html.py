"""HTML building blocks for report.html: escaping, tables, embedded thumbnails, SVG charts, the page.

Everything here turns plain data into HTML text; nothing reads a run directory except
`thumbnail_uri`, which embeds one image file from under a folder. Every string that reaches the page
passes through `esc`, because paths, labels and class names come from files a person did not write.

    >>> from pixlearn.report.html import table
    >>> "<td>&lt;b&gt;</td>" in table(["name"], [["<b>"]])
    True
"""

from __future__ import annotations

import base64
import contextlib
import functools
import html
import io
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
from PIL import Image

from pixlearn.core.errors import ImageError
from pixlearn.core.imaging.images import normalize_mode, open_image, to_pil
from pixlearn.core.text import log_text

# A thumbnail's longest side in pixels: sharp on a laptop at full column width, small in the file.
THUMB_SIDE = 1000
# Above this a PNG thumbnail (a photo, say) is re-encoded as JPEG, so a report stays a few MB.
PNG_BUDGET = 250_000
JPEG_QUALITY = 85
# Charts draw at most this many hover points per series; the line itself keeps more.
MAX_POINTS = 160
MAX_LINE_POINTS = 1200

# No script, and nothing may load from anywhere but this file: the policy makes the browser refuse
# (and report) any request a future edit might add, so "works offline" is enforced, not hoped for.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def esc(value: Any) -> str:
    """Text safe inside HTML content and quoted attributes; control and bidi characters shown
    escaped (`text.log_text`: a name can neither break a line of the log nor show reversed)."""
    return html.escape(log_text(value), quote=True)


def esc_lines(text: str) -> str:
    """`esc` of each line of `text`, the line breaks kept (a <pre> block, a multi-line tooltip)."""
    return "\n".join(esc(line) for line in str(text).split("\n"))


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers for people: ints with thousands separators, floats to `digits` significant figures."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        size = abs(value)
        if math.isnan(value):
            return "n/a"
        if math.isinf(value) or size >= 1e15:
            return f"{value:.{digits - 1}e}" if math.isfinite(value) else str(value)
        if size >= 1000:
            return f"{value:,.0f}"
        if size >= 1 or value == 0:
            return f"{value:.{digits}g}"
        if size >= 1e-3:
            return f"{value:.{digits}f}".rstrip("0").rstrip(".")
        return f"{value:.{digits - 1}e}"
    return str(value)


def percent(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}%"


# ---------------------------------------------------------------------------------- blocks


@dataclass
class Section:
    """One part of the page: an anchor id, a heading and its HTML body."""

    id: str
    title: str
    body: str


def section(part: Section) -> str:
    return f'<section id="{esc(part.id)}">\n<h2>{esc(part.title)}</h2>\n{part.body}\n</section>'


def heading(text: str) -> str:
    return f"<h3>{esc(text)}</h3>"


def paragraph(text: str, cls: str = "") -> str:
    attr = f' class="{esc(cls)}"' if cls else ""
    return f"<p{attr}>{esc(text)}</p>"


def note(text: str) -> str:
    return paragraph(text, "note")


def details(summary: str, body: str) -> str:
    return f"<details><summary>{esc(summary)}</summary>\n{body}\n</details>"


def pre(text: str) -> str:
    return f"<pre>{esc_lines(text)}</pre>"


def _cell(value: Any) -> str:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return f'<td class="num">{esc(fmt(value))}</td>' if numeric else f"<td>{esc(value)}</td>"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "", cls: str = "") -> str:
    """A table; numbers are right-aligned and formatted, everything else escaped as text."""
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in header)
    body = "\n".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    klass = f' class="{esc(cls)}"' if cls else ""
    return f'<div class="scroll"><table{klass}>{cap}<thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody></table></div>'


def key_values(pairs: Mapping[str, Any], caption: str = "") -> str:
    """A two-column table of settings or metrics; lists and dicts are shown compactly."""
    rows = [[key, compact(value)] for key, value in pairs.items()]
    return table(["name", "value"], rows, caption, cls="kv")


def compact(value: Any) -> Any:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={compact(v)}" for k, v in value.items()) or "{}"
    if isinstance(value, list | tuple):
        return ", ".join(str(compact(v)) for v in value) or "[]"
    return value


def heat_table(matrix: Sequence[Sequence[float]], labels: Sequence[str], caption: str, kind: str = "count") -> str:
    """A confusion matrix as a table shaded like a heat map: rows true class, columns predicted.

    kind: count (integers), share (two decimals) or rate (percent; negative means undefined).
    """
    top = max([v for row in matrix for v in row if v is not None and v >= 0] or [0]) or 1
    head = '<th scope="col" class="corner">true \\ predicted</th>' + "".join(
        f'<th scope="col">{esc(c)}</th>' for c in labels
    )
    rows = []
    for label, row in zip(labels, matrix, strict=True):
        cells = "".join(_heat_cell(v, top, kind) for v in row)
        rows.append(f'<tr><th scope="row">{esc(label)}</th>{cells}</tr>')
    body = "\n".join(rows)
    return (
        f'<div class="scroll"><table class="heat"><caption>{esc(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody></table></div>"
    )


def _heat_cell(value: float, top: float, kind: str) -> str:
    if value is None or value < 0:
        return '<td class="num undefined" title="no images of this true class">n/a</td>'
    text = {"count": f"{int(value):,}", "share": f"{value:.2f}", "rate": f"{100 * value:.1f}%"}[kind]
    strength = value / top
    # Blue background whose opacity follows the value; the text turns white on dark cells.
    style = f"background: rgba(31, 94, 180, {0.08 + 0.84 * strength:.3f});" + (
        " color: #fff;" if strength > 0.55 else ""
    )
    return f'<td class="num" style="{style}">{esc(text)}</td>'


def badges(pairs: Mapping[str, Any]) -> str:
    """The headline figures under the title."""
    items = "".join(
        f'<div class="badge"><span class="label">{esc(k)}</span><span class="value">{esc(v)}</span></div>'
        for k, v in pairs.items()
    )
    return f'<div class="badges">{items}</div>'


# ---------------------------------------------------------------------------------- images


_HELD: ContextVar[Mapping[str, np.ndarray] | None] = ContextVar("held_images", default=None)


@contextlib.contextmanager
def held_images(images: Mapping[str | os.PathLike, np.ndarray]) -> Iterator[None]:
    """Within: `thumbnail_uri` of one of these files shrinks the uint8 pixels given instead of
    decoding the file, for a caller that has just written them losslessly (PNG), so the page is the
    one a rebuild from the files gives. Why: a fit of a large image decoded its two full-size PNGs again
    for the report's thumbnails, out of its time budget
    (bench/README.md, "4. The time budget of a whole fit, 16 megapixels (issue 14, item 3)")."""
    token = _HELD.set({os.path.abspath(p): pixels for p, pixels in images.items()})
    try:
        yield
    finally:
        _HELD.reset(token)


def embed_refusal(path: str | os.PathLike, root: str | os.PathLike) -> str | None:
    """Why `path` may not be embedded in a page about the folder `root` (None: it may). The one rule of
    every page's images: only files under the folder its run or check recorded, links resolved, as the
    paths come from files anyone could edit (a check's CSVs); nothing is fetched (a URL is text)."""
    text = os.fspath(path)
    if "://" in text:
        return "a URL (a report fetches nothing)"
    try:
        top = os.path.realpath(root)
        inside = os.path.commonpath([os.path.realpath(text), top]) == top
    except ValueError:  # a NUL byte in the path
        inside = False
    return None if inside else f"outside {os.fspath(root)} (a report embeds only the files under it)"


def thumbnail_uri(path: str | os.PathLike, root: str | os.PathLike, max_side: int = THUMB_SIDE) -> tuple[str, int, int]:
    """(data URI, width, height) of an image file under the folder `root` shrunk to at most `max_side`
    pixels: decoded by images.open_image (the one decoder) unless its pixels are held (`held_images`),
    transparency flattened over white. ImageError names the file it cannot or may not (`embed_refusal`) read."""
    if (refusal := embed_refusal(path, root)) is not None:
        raise ImageError(path, f"not embedded: {refusal}")
    held = (_HELD.get() or {}).get(os.path.abspath(path))
    image = normalize_mode(open_image(path) if held is None else to_pil(held), "auto")
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    data, kind = _encode(image)
    return f"data:image/{kind};base64,{base64.b64encode(data).decode('ascii')}", image.width, image.height


def _encode(image: Image.Image) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    # A photo's thumbnail never fits the PNG budget: a quick zlib level 1 trial (much faster than level 6,
    # and at most 1.41x larger than it over 300 PNGs of figures, photos and thumbnails) sends one more
    # than twice over the budget straight to JPEG without the slow level-6 attempt; the format and bytes
    # chosen are those level 6 alone chose (bench/README.md, "Rendering, measuring and writing a fit").
    image.save(buffer, format="PNG", compress_level=1)
    if buffer.tell() <= 2 * PNG_BUDGET:
        buffer = io.BytesIO()
        # zlib level 6: about 7% larger than optimize=True and 7 times faster on a 1000-pixel figure
        image.save(buffer, format="PNG", compress_level=6)
        if buffer.tell() <= PNG_BUDGET:
            return buffer.getvalue(), "png"
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buffer.getvalue(), "jpeg"


def figure(uri: str, width: int, height: int, alt: str, caption: str = "", pixelated: bool = False) -> str:
    """An embedded image with alt text and an optional caption."""
    cls = ' class="pixelated"' if pixelated else ""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return (
        f'<figure><img src="{uri}" width="{width}" height="{height}" alt="{esc(alt)}"{cls} loading="eager">'
        f"{cap}</figure>"
    )


def grid(items: Sequence[str], cls: str = "grid") -> str:
    """Items side by side on a wide screen, stacked on a phone; empty items are left out."""
    cells = "".join(f"<div>{item}</div>" for item in items if item)
    return f'<div class="{esc(cls)}">{cells}</div>' if cells else ""


# ---------------------------------------------------------------------------------- charts


@dataclass
class Series:
    """One line of a chart: its name, x and y values, colour and whether it is dashed."""

    label: str
    xs: list[float]
    ys: list[float]
    color: str = "#1f5eb4"
    dashed: bool = False


PALETTE = ("#1f5eb4", "#d2462d", "#2a9d4b", "#8c4fb8", "#c7901a", "#167f8a", "#b8457a", "#5d6b7a")

_W, _H = 640, 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 40, 44


def line_chart(
    series: Sequence[Series],
    title: str,
    xlabel: str,
    ylabel: str,
    log_y: bool = False,
    chart_id: str = "",
    marks: Sequence[tuple[float, str]] = (),
) -> str:
    """An inline SVG line chart; hovering any point (or its column) shows the values as a tooltip.
    `marks`: (x, label) dashed vertical lines, e.g. where fine-tuning starts.

    Tooltips are SVG <title> elements, which every browser shows natively: no script needed.
    """
    series = [s for s in series if s.xs]
    if not series:
        return note(f"{title}: no values recorded.")
    xs_all = [x for s in series for x in s.xs]
    ys_all = [_y(y, log_y) for s in series for y in s.ys if _finite(y, log_y)]
    if not ys_all:
        return note(f"{title}: no finite values recorded.")
    x0, x1 = _span(min(xs_all), max(xs_all))
    y0, y1 = _span(min(ys_all), max(ys_all), pad=0.06)
    sx = _scale(x0, x1, _LEFT, _W - _RIGHT)
    sy = _scale(y0, y1, _H - _BOTTOM, _TOP)
    integer_x = all(float(x).is_integer() for x in xs_all)
    parts = [_axes(x0, x1, y0, y1, sx, sy, xlabel, ylabel, log_y, integer_x)]
    parts.append(_hover_columns(series, xlabel, sx, log_y))
    for x, text in marks:
        parts.append(
            f'<line class="mark" x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{_TOP}" y2="{_H - _BOTTOM}" '
            f'stroke="#5d6b7a" stroke-dasharray="4 3"><title>{esc(text)}</title></line>'
            f'<text class="tick" x="{sx(x) + 4:.1f}" y="{_TOP + 12}">{esc(text)}</text>'
        )
    for s in series:
        parts.append(_series_path(s, sx, sy, log_y))
    for s in series:
        parts.append(_series_points(s, xlabel, sx, sy, log_y))
    ident = esc(chart_id or "chart-" + "".join(c if c.isalnum() else "-" for c in title.lower()))
    return (
        f'<figure class="chart"><svg id="{ident}" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-labelledby="{ident}-title" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{ident}-title">{esc(title)}</title>'
        f'<text class="chart-title" x="{_LEFT}" y="18">{esc(title)}</text>' + "".join(parts) + "</svg>"
        f"<figcaption>{_legend(series)}Hover a point to read its value.</figcaption></figure>"
    )


def _finite(y: float, log_y: bool) -> bool:
    return y is not None and math.isfinite(y) and (y > 0 or not log_y)


def _y(y: float, log_y: bool) -> float:
    return math.log10(y) if log_y else y


def _span(lo: float, hi: float, pad: float = 0.0) -> tuple[float, float]:
    if hi - lo < 1e-12:
        return lo - 0.5, hi + 0.5
    margin = (hi - lo) * pad
    return lo - margin, hi + margin


def _scale(lo: float, hi: float, out_lo: float, out_hi: float):
    return lambda v: out_lo + (v - lo) / (hi - lo) * (out_hi - out_lo)


def _ticks(lo: float, hi: float, count: int = 5, integer: bool = False) -> list[float]:
    raw = (hi - lo) / count
    if integer:  # epochs and steps: no tick at 1.5
        raw = max(raw, 1.0)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _tick_text(value: float, log_y: bool = False) -> str:
    if log_y:
        return fmt(10**value, 3)
    return fmt(round(value, 10), 3)


def _axes(x0, x1, y0, y1, sx, sy, xlabel: str, ylabel: str, log_y: bool, integer_x: bool) -> str:
    out = [f'<rect class="plot" x="{_LEFT}" y="{_TOP}" width="{_W - _LEFT - _RIGHT}" height="{_H - _TOP - _BOTTOM}"/>']
    for t in _ticks(y0, y1, integer=log_y and y1 - y0 >= 2):  # whole decades on a log axis
        y = sy(t)
        out.append(f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(
            f'<text class="tick" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(_tick_text(t, log_y))}</text>'
        )
    for t in _ticks(x0, x1, 6, integer=integer_x):
        x = sx(t)
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{_H - _BOTTOM}"/>')
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{_H - _BOTTOM + 16}" text-anchor="middle">{esc(_tick_text(t))}</text>'
        )
    out.append(
        f'<text class="axis" x="{(_LEFT + _W - _RIGHT) / 2}" y="{_H - 6}" text-anchor="middle">{esc(xlabel)}</text>'
    )
    ycenter = (_TOP + _H - _BOTTOM) / 2
    out.append(
        f'<text class="axis" x="14" y="{ycenter}" text-anchor="middle" transform="rotate(-90 14 {ycenter})">'
        f"{esc(ylabel + (' (log scale)' if log_y else ''))}</text>"
    )
    return "".join(out)


def _thin(count: int, limit: int) -> list[int]:
    """Indices of at most `limit` evenly spread items, always keeping the last."""
    if count <= limit:
        return list(range(count))
    step = (count - 1) / (limit - 1)
    return sorted({round(i * step) for i in range(limit)})


def _series_path(s: Series, sx, sy, log_y: bool) -> str:
    keep = [i for i in _thin(len(s.xs), MAX_LINE_POINTS) if _finite(s.ys[i], log_y)]
    points = " ".join(f"{sx(s.xs[i]):.1f},{sy(_y(s.ys[i], log_y)):.1f}" for i in keep)
    dash = ' stroke-dasharray="6 4"' if s.dashed else ""
    return f'<polyline class="line" points="{points}" stroke="{esc(s.color)}"{dash}/>'


def _series_points(s: Series, xlabel: str, sx, sy, log_y: bool) -> str:
    out = []
    for i in _thin(len(s.xs), MAX_POINTS):
        if not _finite(s.ys[i], log_y):
            continue
        x, y = sx(s.xs[i]), sy(_y(s.ys[i], log_y))
        tip = f"{xlabel} {fmt(s.xs[i])}: {s.label} {fmt(s.ys[i])}"
        out.append(
            f'<g class="pt"><title>{esc(tip)}</title><circle class="hit" cx="{x:.1f}" cy="{y:.1f}" r="9"/>'
            f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{esc(s.color)}"/></g>'
        )
    return "".join(out)


def _hover_columns(series: Sequence[Series], xlabel: str, sx, log_y: bool) -> str:
    """An invisible band per x value whose tooltip lists every series there, as plotly's hover does."""
    values: dict[float, list[str]] = {}
    for s in series:
        for i in _thin(len(s.xs), MAX_POINTS):
            if _finite(s.ys[i], log_y):
                values.setdefault(s.xs[i], []).append(f"{s.label} {fmt(s.ys[i])}")
    xs = sorted(values)
    if len(xs) < 2:
        return ""
    out = []
    for i, x in enumerate(xs):
        left = sx((xs[i - 1] + x) / 2) if i else sx(x)
        right = sx((x + xs[i + 1]) / 2) if i + 1 < len(xs) else sx(x)
        tip = f"{xlabel} {fmt(x)}\n" + "\n".join(values[x])
        out.append(
            f'<rect class="column" x="{left:.1f}" y="{_TOP}" width="{max(right - left, 1):.1f}" '
            f'height="{_H - _TOP - _BOTTOM}"><title>{esc_lines(tip)}</title></rect>'
        )
    return "".join(out)


def _legend(series: Sequence[Series]) -> str:
    """An HTML legend under the chart: it wraps on a phone however many series there are."""
    items = "".join(
        f'<li><span class="swatch" style="border-top: 3px {"dashed" if s.dashed else "solid"} {esc(s.color)};">'
        f"</span>{esc(s.label)}</li>"
        for s in series
    )
    return f'<ul class="legend">{items}</ul>'


# ---------------------------------------------------------------------------------- the page


@functools.cache
def _css() -> str:
    """The page's stylesheet (style.css beside this module), inlined so the report is one file."""
    return resources.files("pixlearn.report").joinpath("style.css").read_text(encoding="utf-8")


def page(title: str, subtitle: str, headline: Mapping[str, Any], parts: Sequence[Section], footer: str) -> str:
    """The whole document: inline CSS, no script, a contents bar and the sections."""
    nav = "".join(f'<a href="#{esc(p.id)}">{esc(p.title)}</a>' for p in parts)
    body = "\n".join(section(p) for p in parts)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="generator" content="pixlearn">
<link rel="icon" href="data:,">
<title>{esc(title)}</title>
<style>{_css()}</style>
</head>
<body>
<header>
<h1>{esc(title)}</h1>
<p class="subtitle">{esc(subtitle)}</p>
{badges(headline)}
<nav aria-label="Sections">{nav}</nav>
</header>
<main>
{body}
</main>
<footer>{esc(footer)}</footer>
</body>
</html>
"""
