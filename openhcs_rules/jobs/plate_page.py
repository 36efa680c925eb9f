"""``plate.html``: a plate's tables as a page the Snakemake report shows in place.

The report offers CSV files only as downloads; a person opening it wants to read the plate's numbers
there. This page holds, for one plate: the assay quality (Z'-factor and SSMD per timepoint, with what the
values mean), the wells table (every row, numbers rounded for reading: the CSV and Parquet keep them
exact) and the flagged images with their reasons.

Self-contained (inline CSS, no script, nothing fetched), and every value from the tables is HTML-escaped:
plate-map columns are text a person typed.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from openhcs_rules.core.files import atomic_write_text

#: how Z' is read (Zhang et al. 1999)
Z_PRIME_BANDS = ((0.5, "excellent"), (0.0, "usable"), (-math.inf, "controls overlap"))

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.2em; color: #1f2933; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #cbd2d9; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f0f4f8; position: sticky; top: 0; }
td.text { text-align: left; }
.excellent { background: #c6f6d5; } .usable { background: #fefcbf; } .overlap { background: #fed7d7; }
.note { color: #52606d; }
"""


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<td></td>"
    if isinstance(value, bool):
        return f'<td class="text">{"yes" if value else ""}</td>'
    if isinstance(value, int):
        return f"<td>{value}</td>"
    if isinstance(value, float):
        text = f"{value:.4g}" if abs(value) < 1e5 else f"{value:.6g}"
        return f"<td>{html.escape(text)}</td>"
    return f'<td class="text">{html.escape(str(value))}</td>'


def html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as an HTML table (columns: every key, first seen first); "none" when there are no rows."""
    if not rows:
        return '<p class="note">none</p>'
    names: list[str] = list(columns) if columns is not None else []
    if columns is None:
        for row in rows:
            names.extend(key for key in row if key not in names)
    head = "".join(f"<th>{html.escape(name)}</th>" for name in names)
    body = "\n".join("<tr>" + "".join(_cell(row.get(name)) for name in names) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def z_prime_verdict(value: float | None) -> str:
    """``excellent`` (>= 0.5), ``usable`` (>= 0) or ``controls overlap``; empty when there is no value."""
    if value is None:
        return ""
    return next(label for bound, label in Z_PRIME_BANDS if value >= bound)


def quality_section(quality: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for entry in quality:
        verdict = z_prime_verdict(entry.get("z_prime"))
        css = {"excellent": "excellent", "usable": "usable", "controls overlap": "overlap"}.get(verdict, "")
        z_prime, ssmd = entry.get("z_prime"), entry.get("ssmd")
        lines.append(
            f'<tr class="{css}"><td>{int(entry["Metadata_Timepoint"])}</td>'
            f'<td class="text">{html.escape(str(entry.get("feature", "")))}</td>'
            f"<td>{entry.get('n_positive', 0)}</td><td>{entry.get('n_negative', 0)}</td>"
            f"{_cell(z_prime)}<td class='text'>{html.escape(verdict)}</td>{_cell(ssmd)}"
            f'<td class="text note">{html.escape(str(entry.get("note") or ""))}</td></tr>'
        )
    head = "<tr><th>t</th><th>feature</th><th>positive wells</th><th>negative wells</th><th>Z'</th>"
    head += "<th>reading</th><th>SSMD</th><th>note</th></tr>"
    return f"<table><thead>{head}</thead><tbody>{''.join(lines)}</tbody></table>"


def write_plate_page(
    plate: str,
    wells: Sequence[Mapping[str, Any]],
    quality: Sequence[Mapping[str, Any]],
    flagged: Sequence[Mapping[str, Any]],
    path: str | Path,
) -> None:
    """Write the plate's page (module docstring), atomically."""
    title = html.escape(plate)
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}: tables</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Plate {title}</h1>",
        "<h2>Assay quality</h2>",
        "<p class='note'>Z' = 1 - 3 (sd+ + sd-) / |mean+ - mean-| of the plate map's positive and negative "
        "control wells: at least 0.5 excellent, 0 to 0.5 usable, below 0 the controls overlap. "
        "SSMD = (mean+ - mean-) / sqrt(sd+² + sd-²).</p>",
        quality_section(quality),
        f"<h2>Wells ({len(wells)} rows)</h2>",
        "<p class='note'>One row per well and timepoint; numbers rounded here, exact in wells.csv and "
        "wells.parquet.</p>",
        html_table(wells),
        f"<h2>Flagged images ({len(flagged)})</h2>",
        html_table(flagged),
        "</body></html>",
    ]
    atomic_write_text(path, "\n".join(parts) + "\n")
