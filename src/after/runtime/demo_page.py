"""The demo's page: one self-contained ``index.html`` (inline style, no script, no external file
but the demo's own audio and images, all linked by relative paths) and the map with the walk.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from after.runtime.demo import MODE_TITLES, DemoReport, ItemResult, ModeResult

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1, h2, h3 { font-weight: 600; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0 1em; } td, th { padding: .3em .6em; vertical-align: top; }
th { text-align: left; background: #f0f0f0; } tr + tr td { border-top: 1px solid #e4e4e4; }
audio { width: 240px; } img { max-width: 100%; } .note { background: #fff6dd; padding: .5em 1em; }
.small { color: #666; font-size: 90%; } code { background: #f4f4f4; padding: 0 .2em; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _audio(path: str | None) -> str:
    return f'<audio controls preload="none" src="{_e(path)}"></audio>' if path else ""


def _link(path: str, text: str) -> str:
    return f'<a href="{_e(path)}">{_e(text)}</a>'


def _settings_table(mode: ModeResult) -> str:
    s = mode.settings
    source = f" <span class=small>({_e(mode.model_source)})</span>" if mode.model_source else ""
    block = f"{mode.block_ms:.1f} ms"
    rows = [
        ("model", _e(mode.model_name) + source),
        ("sample rate", f"{mode.sample_rate} Hz"),
        ("sampling steps", s["steps"]),
        ("guidance (timbre / structure)", f"{s['guidance_timbre']:g} / {s['guidance_structure']:g}"),
        ("seed", s["seed"]),
        ("chunk", f"{s['chunk']} latent frames = {s['block_samples']} samples = {block} per block"),
        (
            "latency (algorithmic)",
            f"{mode.latency_ms:.1f} ms = one block {block} + codec {mode.codec_latency_ms:.1f} ms",
        ),
        (
            "real-time factor (measured)",
            f"{mode.real_time_factor:.3f} (compute time per second of audio; < 1 is faster than real time)",
        ),
        ("slowest block (measured)", f"{mode.worst_block_ms:.1f} ms for a {block} block"),
    ]
    body = "".join(
        f"<tr><th>{_e(name)}</th><td>{value if name == 'model' else _e(value)}</td></tr>"
        for name, value in rows
    )
    return f"<table>{body}</table>"


def _structure_cell(item: ItemResult) -> str:
    if item.structure_file.endswith(".mid"):
        return f"{_e(item.structure)}<br>{_link(item.structure_file, 'MIDI file')}"
    return f"{_e(item.structure)}<br>{_audio(item.structure_file)}"


def _timbre_cell(item: ItemResult) -> str:
    if item.reference_file:
        return f"{_e(item.timbre)}<br>{_audio(item.reference_file)}"
    if item.timbre_vector is not None:
        return "vector by hand<br><code>" + _e(",".join(f"{v:g}" for v in item.timbre_vector)) + "</code>"
    return _e(item.timbre)


def _item_rows(items: Sequence[ItemResult]) -> str:
    rows = []
    for item in items:
        rows.append(
            "<tr>"
            f"<td>{_e(item.title)}</td><td>{_structure_cell(item)}</td><td>{_timbre_cell(item)}</td>"
            f"<td>{_audio(item.output)}<br><span class=small>{item.seconds:.2f} s, "
            f"real-time factor {item.real_time_factor:.3f}"
            + (f", scaled by {item.gain:.3f}" if item.gain != 1.0 else "")
            + "</span></td></tr>"
            f'<tr><td colspan=4><img src="{_e(item.figure)}" alt="spectrograms: {_e(item.title)}"></td></tr>'
        )
    header = "<tr><th>output</th><th>structure</th><th>timbre</th><th>result</th></tr>"
    return f"<table>{header}{''.join(rows)}</table>"


def _mode_section(mode: ModeResult) -> str:
    title = MODE_TITLES[mode.mode]
    walk = [item for item in mode.items if item.kind == "walk"]
    others = [item for item in mode.items if item.kind != "walk"]
    fitted = (
        "<p class=note>This model ships no timbre map: the map below was fitted for this page on the "
        "timbre vectors of the references and of simple test signals.</p>"
        if mode.map_fitted
        else ""
    )
    walk_html = ""
    if walk:
        item = walk[0]
        walk_html = (
            f"<h3>A walk across the timbre map</h3>{fitted}"
            f"<p>The timbre follows the path drawn on the map, one position per block "
            f"({len(mode.walk_positions)} blocks), through the references' positions and back; "
            f"the structure is {_e(item.structure)} in a row.</p>"
            f'<p><img src="{_e(mode.map_figure)}" alt="timbre map with the walk" style="max-width:520px"></p>'
            + _item_rows(walk)
        )
    return (
        f'<h2 id="{_e(mode.mode)}">{_e(title.capitalize())}</h2>'
        + _settings_table(mode)
        + f"<h3>Transfers</h3>{_item_rows(others)}"
        + walk_html
    )


def _inputs_section(report: DemoReport) -> str:
    phrases = "".join(
        f"<tr><td>{_e(row['name'])}</td><td>{_e(row['style'])}, {row['notes']} notes</td>"
        f"<td>{_link(row['midi'], 'MIDI file')}</td>"
        f"<td>{_e(row['instrument'])} ({_e(row['soundfont'])})<br>{_audio(row['audio'])}</td></tr>"
        for row in report.phrases
    )
    references = "".join(
        f"<tr><td>{_e(row['name'])}</td><td>GM program {row['program']} ({_e(row['soundfont'])})</td>"
        f"<td>{_audio(row['audio'])}</td></tr>"
        for row in report.references
    )
    return (
        "<h2 id=inputs>Inputs</h2>"
        f"<p>Phrases of {report.phrase_seconds:g} s drawn by the procedural generator (seed {report.seed}) "
        "and played with FluidSynth.</p>"
        f"<h3>Structure phrases</h3><table><tr><th>phrase</th><th>material</th><th>MIDI</th>"
        f"<th>played by</th></tr>{phrases}</table>"
        f"<h3>Timbre references</h3><table><tr><th>instrument</th><th>sound</th><th>audio</th></tr>"
        f"{references}</table>"
    )


def render_page(report: DemoReport) -> str:
    """The HTML text of the page for ``report``."""
    notes = "".join(f"<p class=note>{_e(note)}</p>" for note in report.notes)
    contents = " · ".join(f'<a href="#{_e(m.mode)}">{_e(MODE_TITLES[m.mode])}</a>' for m in report.modes)
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>after demo</title><style>{STYLE}</style></head><body>"
        "<h1>after demo</h1>"
        "<p>Timbre and structure transfer, generated block by block as in real time. Spectrograms: "
        "log-frequency (mel) scale, one colour scale for all, 0 dB = a full-scale 1 kHz sine.</p>"
        f"{notes}<p>{contents} · <a href=#inputs>inputs</a> · <a href=demo.json>demo.json</a></p>"
        + "".join(_mode_section(mode) for mode in report.modes)
        + _inputs_section(report)
        + "</body></html>\n"
    )


def write_page(out: Path, report: DemoReport) -> Path:
    """Write ``out/index.html``; returns its path."""
    path = Path(out) / report.page
    path.write_text(render_page(report), encoding="utf-8")
    return path


def draw_walk_map(
    path: str | Path,
    timbre_map: object,
    background: np.ndarray,
    background_labels: Sequence[str],
    reference_xy: np.ndarray,
    reference_names: Sequence[str],
    waypoints: np.ndarray,
    positions: np.ndarray,
) -> Path:
    """The map: background timbre vectors ``[N, ZT]`` as dots coloured by label, the references
    (``[R, 2]`` map positions) as labelled stars, the walk (``positions [P, 2]``) as a line with
    an arrow and numbered waypoints, the ``[-1, 1]^2`` square; written as a PNG."""
    from matplotlib.figure import Figure

    from after.runtime.demo_walk import vectors_to_map
    from after.runtime.timbre_map import scatter_by_label

    points = vectors_to_map(timbre_map, background) if len(background) else np.zeros((0, 2))
    figure = Figure(figsize=(5.5, 5.5), dpi=100)
    axes = figure.subplots()
    axes.set_facecolor("#eeeeee")
    scatter_by_label(axes, points, list(background_labels), size=14, alpha=0.7)
    axes.plot(positions[:, 0], positions[:, 1], color="black", linewidth=1.4, label="walk")
    if len(positions) >= 2:
        middle = len(positions) // 2
        axes.annotate("", xy=positions[middle], xytext=positions[max(middle - 1, 0)],
                      arrowprops={"arrowstyle": "-|>", "color": "black"})  # fmt: skip
    for number, point in enumerate(waypoints[:-1]):
        axes.annotate(str(number + 1), point, fontsize=8, xytext=(4, -10), textcoords="offset points")
    axes.scatter(reference_xy[:, 0], reference_xy[:, 1], marker="*", s=160, color="#c0392b", zorder=3)
    for name, point in zip(reference_names, reference_xy):
        axes.annotate(name, point, fontsize=9, xytext=(6, 4), textcoords="offset points")
    axes.plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], color="black", linewidth=0.6)
    extent = max(1.2, float(np.abs(np.concatenate([points, reference_xy, positions])).max()) + 0.1)
    axes.set_xlim(-extent, extent)
    axes.set_ylim(-extent, extent)
    axes.set_aspect("equal")
    axes.legend(loc="upper right", fontsize=7, framealpha=0.7)
    axes.set_title("timbre map: references (stars) and the walk", fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight")
    return path
