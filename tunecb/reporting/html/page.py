"""The study as one self-contained HTML page: summary, plots (embedded PNGs), ranked table.

The page needs nothing but a browser: no CDN, no script from elsewhere, images inline as
``data:`` URIs. A few lines of inline JavaScript sort the table by a clicked column.

>>> page = html_report(study_records("results/digits"))  # doctest: +SKIP
>>> Path("report.html").write_text(page)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from typing import Any

from tunecb._version import __version__
from tunecb.errors import first_line
from tunecb.reporting.data.overview import Overview, backend_line, overview, saved_text, sources
from tunecb.reporting.data.records import TIES_NOTE, StudyRecords, columns, has_ties
from tunecb.reporting.plots.study import Plot, render_plots
from tunecb.reporting.text.cells import cell, checkpoint_cell, clipped
from tunecb.wording import duration_text, plural, size_text


def html_report(
    result: StudyRecords, plots: list[Plot] | None = None, top: int | None = None
) -> str:
    """The whole page for ``result`` (plots drawn here unless given; ``top``: the table's
    rows, the summary and plots still cover every trial)."""
    plots = render_plots(result) if plots is None else plots
    info = overview(result)
    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    title = f"tunecb report: {result.name}"
    total = sum(info.states.values())
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<header><h1>Study <code>{_e(result.name)}</code></h1>",
            f'<p class="sub">{_e(info.monitor)} ({_e(info.direction)}) · '
            f"{plural(total, 'trial')} · "
            f"written {_e(now)} by tunecb {_e(__version__)}</p></header>",
            _summary(info, result),
            _plots(plots),
            _table(result, top),
            f"<script>{_JS}</script>",
            "</body></html>",
        ]
    )


def _summary(info: Overview, result: StudyRecords) -> str:
    items: list[tuple[str, str]] = []
    best = info.best
    if best is not None:
        epochs = f" of {result.epochs}" if result.epochs else ""
        params = ", ".join(
            f"{_e(k.removeprefix('params_'))}={_e(cell(v))}"
            for k, v in best.items()
            if k.startswith("params_") and v is not None
        )
        items.append(
            (
                "Best trial",
                f"trial <strong>{best['trial']}</strong>: {_e(info.monitor)} "
                f"<strong>{_e(cell(best['value']))}</strong> at epoch "
                f"{_e(cell(best['best_epoch']))}{_e(epochs)}",
            )
        )
        items.append(("Its hyperparameters", params or "none"))
        checkpoint = best.get("checkpoint")
        items.append(
            ("Its checkpoint", f"<code>{_e(checkpoint)}</code>" if checkpoint else "none on disk")
        )
    else:
        items.append(("Best trial", "none yet: no trial completed with a finite value"))
    order = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
    states = sorted(info.states.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 9)
    items.append(
        (
            "Trials",
            ", ".join(f'<span class="s-{_e(k)}">{n} {_e(k.lower())}</span>' for k, n in states)
            or "none",
        )
    )
    items += [("Trials from", _e(text)) for text in sources(result)]  # warm start, given
    if info.epochs_budget:
        saved = _e(saved_text(info))
        items.append(
            (
                "Epochs trained",
                f"{info.epochs_trained:,} of {info.epochs_budget:,} "
                f"({info.epochs_trained / info.epochs_budget:.0%} of the full budget)"
                + (f"; not trained thanks to {saved}" if saved else ""),
            )
        )
    else:
        items.append(("Epochs trained", f"{info.epochs_trained:,}"))
    wall = duration_text(info.wall_s)
    compute = duration_text(info.compute_s)
    items.append(("Time", f"{wall} wall clock, {compute} in trials{_at_a_time(info)}"))
    hosts = len(info.hosts)
    where = f" on {plural(hosts, 'host')} ({_e(', '.join(info.hosts))})" if hosts else ""
    items.append(("Workers", f"{plural(len(info.workers), 'worker process')}{where}"))
    if info.backends:
        items.append(("Keras backend", _e(backend_line(info).removeprefix("on "))))
    disk = f"{plural(info.checkpoints, 'file')}, {size_text(info.checkpoint_bytes)}"
    if info.checkpoints_removed:
        shown = ", ".join(f"#{n}" for n in info.checkpoints_removed[:30])
        more = "…" if len(info.checkpoints_removed) > 30 else ""
        disk += (
            f"; {len(info.checkpoints_removed)} removed by --keep-checkpoints "
            f"(trials {shown}{more})"
        )
    items.append(("Checkpoints", disk))
    rows = "\n".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in items)
    return f'<section id="summary"><h2>Summary</h2><dl>{rows}</dl></section>'


def _at_a_time(info: Overview) -> str:
    """How many trials ran at once on average: ``; one trial at a time``,
    ``; 3.6 trials at a time on average`` (or ``""`` without a wall time).

    >>> _at_a_time(Overview("s", "v", "maximize", {}, None, None, 0, wall_s=10, compute_s=9.9))
    '; one trial at a time'
    >>> _at_a_time(Overview("s", "v", "maximize", {}, None, None, 0, wall_s=10, compute_s=36))
    '; 3.6 trials at a time on average'
    """
    if not info.wall_s:
        return ""
    ratio = info.compute_s / info.wall_s
    if ratio < 1.05:
        return "; one trial at a time"
    return f"; {ratio:.1f} trials at a time on average"


def _plots(plots: list[Plot]) -> str:
    parts = ['<section id="plots"><h2>Plots</h2>']
    for plot in plots:
        if plot.png is None:
            parts.append(
                f'<figure id="plot-{plot.name}" class="skipped"><h3>{_e(plot.title)}</h3>'
                f"<p>Left out: {_e(plot.skipped or '')}.</p></figure>"
            )
            continue
        data = base64.b64encode(plot.png).decode("ascii")
        parts.append(
            f'<figure id="plot-{plot.name}"><h3>{_e(plot.title)}</h3>'
            f'<img src="data:image/png;base64,{data}" alt="{_e(plot.title)}">'
            f"<figcaption>{_e(plot.caption)}</figcaption></figure>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def _table(result: StudyRecords, top: int | None) -> str:
    cols = columns(result.records)
    root = str(result.study_dir.root) if result.study_dir else None
    head = "".join(f"<th>{_e(c.removeprefix('params_'))}</th>" for c in ["rank", *cols])
    rows = []
    shown = result.records[:top] if top else result.records
    ties = f"{TIES_NOTE[0].upper()}{TIES_NOTE[1:]}. " if has_ties(shown) else ""
    for rank, record in enumerate(shown, 1):
        cells = [f'<td data-v="{rank}">{rank}</td>']
        for c in cols:
            cells.append(_td(c, record, root))
        rows.append(f'<tr class="s-{_e(record["state"])}">{"".join(cells)}</tr>')
    return (
        f'<section id="trials"><h2>Trials, ranked by {_e(result.monitor or "value")}</h2>'
        f'<p class="sub">{_e(ties)}Click a column header to sort.</p>'
        f'<div class="scroll"><table id="trials-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{chr(10).join(rows)}\n</tbody></table></div></section>"
    )


def _td(column: str, record: dict[str, Any], root: str | None) -> str:
    value = record.get(column)
    if column == "checkpoint":
        if record.get("checkpoint_removed"):
            return f'<td class="removed">{_e(checkpoint_cell(record))}</td>'
        if not value:
            return "<td></td>"
        shown = value[len(root) + 1 :] if root and value.startswith(root + "/") else value
        return f'<td title="{_e(value)}"><code>{_e(shown)}</code></td>'
    if column == "error" and value:  # its first line, the whole of it on hover
        return f'<td class="error" title="{_e(value)}">{_e(clipped(first_line(value), 80))}</td>'
    number = isinstance(value, int | float) and not isinstance(value, bool)
    sort = f' data-v="{value!r}"' if number else ""
    return f"<td{sort}>{_e(cell(value))}</td>"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1200px;padding:16px 24px;color:#1d232a;background:#fff}
h1{font-size:22px;margin:8px 0 0}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:16px 0 4px}.sub{color:#5b6670;margin:2px 0 8px}
code{font:12px/1.3 ui-monospace,SFMono-Regular,Menlo,monospace;background:#f3f5f7;padding:1px 3px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
dt{color:#5b6670}dd{margin:0}
figure{margin:0 0 18px}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption,.skipped p{color:#5b6670;font-size:13px}
.scroll{overflow:auto;max-height:80vh;border:1px solid #ddd}
table{border-collapse:collapse;font-size:12.5px;white-space:nowrap}
th{position:sticky;top:0;background:#f3f5f7;cursor:pointer;text-align:left;padding:4px 8px}
td{padding:3px 8px;border-top:1px solid #eee}td[data-v]{text-align:right}
tr.s-COMPLETE td:nth-child(3){color:#1f77b4}tr.s-PRUNED td:nth-child(3){color:#d9730d}
tr.s-FAIL td:nth-child(3){color:#d62728}.removed{color:#8a8f94;font-style:italic}
tbody tr:nth-child(even){background:#fafbfc}
"""

_JS = """
document.querySelectorAll('#trials-table th').forEach((th, i) =>
 th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], rows = Array.from(body.rows);
  const dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir > 0 ? 'asc' : 'desc';
  const key = r => { const c = r.cells[i]; return c.dataset.v !== undefined ?
    parseFloat(c.dataset.v) : c.textContent; };
  rows.sort((a, b) => { const x = key(a), y = key(b);
    if (x === y) return 0; if (x === '' || Number.isNaN(x)) return 1;
    if (y === '' || Number.isNaN(y)) return -1; return (x < y ? -1 : 1) * dir; });
  rows.forEach(r => body.appendChild(r));
}));
"""
