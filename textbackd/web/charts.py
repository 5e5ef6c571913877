"""Small SVG charts drawn on the server (no JavaScript, no chart library): bars per period for
counts, lines for rates. Each chart has a title and a text description for screen readers, and
the page shows the table of the same numbers beside it."""

from __future__ import annotations

from html import escape

from markupsafe import Markup

W, H, PAD_L, PAD_B, PAD_T = 640, 220, 36, 38, 14


def _frame(title: str, desc: str, body: str, legend: list[tuple[str, str]]) -> Markup:
    keys = "".join(
        f'<rect x="{PAD_L + i * 150}" y="{H - 12}" width="10" height="10" class="{cls}"/>'
        f'<text x="{PAD_L + i * 150 + 14}" y="{H - 3}" class="axis">{escape(name)}</text>'
        for i, (name, cls) in enumerate(legend))
    return Markup(
        f'<svg viewBox="0 0 {W} {H}" role="img" aria-labelledby="t-{id(body)} d-{id(body)}" class="chart">'
        f'<title id="t-{id(body)}">{escape(title)}</title><desc id="d-{id(body)}">{escape(desc)}</desc>'
        f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - 4}" y2="{H - PAD_B}" class="grid"/>{body}{keys}</svg>')


def _labels(labels: list[str], step: float) -> str:
    every = max(1, len(labels) // 10)
    return "".join(
        f'<text x="{PAD_L + (i + 0.5) * step:.1f}" y="{H - PAD_B + 13}" class="axis" text-anchor="middle">'
        f"{escape(lab)}</text>" for i, lab in enumerate(labels) if i % every == 0)


def bars(title: str, labels: list[str], series: list[tuple[str, list[int], str]]) -> Markup:
    """Grouped bars: ``series`` = [(name, values, css class)], one value per label."""
    if not labels:
        return Markup("")
    top = max([1, *[v for _, vals, _ in series for v in vals]])
    step = (W - PAD_L - 4) / len(labels)
    bw = step * 0.8 / max(1, len(series))
    inner = H - PAD_B - PAD_T
    out = [f'<text x="{PAD_L - 4}" y="{PAD_T + 4}" class="axis" text-anchor="end">{top}</text>',
           f'<text x="{PAD_L - 4}" y="{H - PAD_B}" class="axis" text-anchor="end">0</text>']
    for s, (name, vals, cls) in enumerate(series):
        for i, v in enumerate(vals):
            h = inner * v / top
            x = PAD_L + i * step + step * 0.1 + s * bw
            out.append(f'<rect x="{x:.1f}" y="{H - PAD_B - h:.1f}" width="{bw:.1f}" height="{h:.1f}" class="{cls}">'
                       f"<title>{escape(labels[i])}: {v} {escape(name)}</title></rect>")
    desc = "; ".join(f"{name}: " + ", ".join(f"{lab} {v}" for lab, v in zip(labels, vals)) for name, vals, _ in series)
    return _frame(title, desc, "".join(out) + _labels(labels, step), [(n, c) for n, _, c in series])


def lines(title: str, labels: list[str], series: list[tuple[str, list[float | None], str]]) -> Markup:
    """Rates from 0 to 100 %: ``series`` = [(name, values 0..1 or None, css class)]."""
    if not labels:
        return Markup("")
    step = (W - PAD_L - 4) / len(labels)
    inner = H - PAD_B - PAD_T
    out = [f'<text x="{PAD_L - 4}" y="{PAD_T + 4}" class="axis" text-anchor="end">100%</text>',
           f'<text x="{PAD_L - 4}" y="{H - PAD_B}" class="axis" text-anchor="end">0%</text>']
    for name, vals, cls in series:
        pts = [(PAD_L + (i + 0.5) * step, H - PAD_B - inner * v) for i, v in enumerate(vals) if v is not None]
        if pts:
            out.append(f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in pts)}" class="{cls}" fill="none"/>')
            out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" class="{cls}"/>' for x, y in pts]
    desc = "; ".join(f"{name}: " + ", ".join(f"{lab} {'-' if v is None else f'{100 * v:.0f}%'}"
                                           for lab, v in zip(labels, vals)) for name, vals, _ in series)
    return _frame(title, desc, "".join(out) + _labels(labels, step), [(n, c) for n, _, c in series])
