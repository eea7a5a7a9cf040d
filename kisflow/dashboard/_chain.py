"""A flow's chain as SVG: Graphviz's ``dot`` when installed, a built-in row of boxes otherwise.

Each stage is a group with ``id="stage-<position>"`` and the class ``stage``, so the page
colours it by state (idle, running, failing) with CSS, without drawing it again.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from loguru import logger

__all__ = ["builtin_svg", "chain_svg", "dot_svg"]

_LETTERS = {"Verify": "V", "Save": "S", "Load": "L", "Calculate": "C", "Expand": "E"}
_SHAPES = {"Verify": "diamond", "Save": "cylinder", "Load": "cylinder", "Expand": "hexagon"}
"""Graphviz shapes by mode, as in ``kisflow graph`` (a Calculate is a rounded box)."""


def chain_svg(flow: str, stages: Sequence[tuple[str, str]]) -> str:
    """The chain of ``(name, mode)`` stages as an SVG document, drawn by ``dot`` if it can."""
    dot = shutil.which("dot")
    if dot is not None and stages:
        svg = dot_svg(dot, flow, stages)
        if svg is not None:
            return svg
    return builtin_svg(flow, stages)


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def dot_svg(dot: str, flow: str, stages: Sequence[tuple[str, str]]) -> str | None:
    """The chain drawn by Graphviz (``dot -Tsvg``), or None when ``dot`` fails."""
    lines = [
        "digraph chain {",
        "  rankdir=LR; bgcolor=transparent;",
        '  node [shape=box, style="rounded,filled", fillcolor="#eef1f5", fontname="Helvetica",'
        " fontsize=12];",
    ]
    for i, (name, mode) in enumerate(stages):
        label = f"{name}\n{mode} ({_LETTERS.get(mode, '?')})"
        shape = _SHAPES.get(mode)
        look = f', shape={shape}, style=filled, margin="0.05,0.02"' if shape else ""
        lines.append(f'  s{i} [id="stage-{i}", class="stage", label={_quote(label)}{look}];')
    lines += [f"  s{i} -> s{i + 1};" for i in range(len(stages) - 1)]
    lines.append("}")
    try:
        proc = subprocess.run(
            [dot, "-Tsvg"],
            input="\n".join(lines).encode(),
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("dashboard: dot failed on flow {!r}: {}", flow, exc)
        return None
    if proc.returncode != 0:
        logger.warning(
            "dashboard: dot failed on flow {!r}: {}", flow, proc.stderr.decode(errors="replace")
        )
        return None
    text = proc.stdout.decode("utf-8", errors="replace")
    start = text.find("<svg")
    return text[start:] if start >= 0 else None


BOX_W, BOX_H, GAP, PAD = 150, 50, 40, 10


def builtin_svg(flow: str, stages: Sequence[tuple[str, str]]) -> str:
    """The chain as a row of rounded boxes joined by arrows (no Graphviz needed)."""
    width = PAD * 2 + max(1, len(stages)) * BOX_W + max(0, len(stages) - 1) * GAP
    height = PAD * 2 + BOX_H
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}pt" height="{height}pt" '
        f'viewBox="0 0 {width} {height}">',
        f"<title>{escape(flow)}</title>",
        '<defs><marker id="arrow" markerWidth="10" markerHeight="10" refX="9" refY="5" '
        'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    for i, (name, mode) in enumerate(stages):
        x = PAD + i * (BOX_W + GAP)
        shown = name if len(name) <= 20 else name[:19] + "\u2026"
        parts.append(
            f'<g id="stage-{i}" class="node stage"><title>{escape(name)}</title>'
            f'<rect x="{x}" y="{PAD}" width="{BOX_W}" height="{BOX_H}" rx="8" '
            f'fill="#eef1f5" stroke="#333"/>'
            f'<text x="{x + BOX_W / 2}" y="{PAD + 21}" text-anchor="middle" '
            f'font-family="Helvetica" font-size="13">{escape(shown)}</text>'
            f'<text x="{x + BOX_W / 2}" y="{PAD + 39}" text-anchor="middle" '
            f'font-family="Helvetica" font-size="11" fill="#555">'
            f"{escape(mode)} ({_LETTERS.get(mode, '?')})</text></g>"
        )
        if i + 1 < len(stages):
            x1, x2, y = x + BOX_W, x + BOX_W + GAP - 2, PAD + BOX_H / 2
            parts.append(
                f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="#555" '
                f'marker-end="url(#arrow)" class={quoteattr("edge")}/>'
            )
    parts.append("</svg>")
    return "\n".join(parts)
