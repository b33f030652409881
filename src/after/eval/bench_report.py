"""Reports of :func:`after.eval.bench.run_bench`: JSON records, a markdown table and an RTF plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COMPONENTS = ("encode_ms", "structure_ms", "timbre_ms", "step_ms", "diffuse_ms", "decode_ms", "call_ms")
QUALITY = (
    "rel_error_velocity",
    "rel_error_latents",
    "rel_error_audio",
    "rel_error_encode",
    "rel_error_decode",
)


def write_json(result: dict[str, Any], path: str | Path) -> Path:
    """Write the list of records (one per configuration) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result["records"], indent=1) + "\n")
    return path


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_report(result: dict[str, Any]) -> str:
    """Machine info, one table row per record, the int8 quality and the memory figures."""
    machine, records = result["machine"], result["records"]
    lines = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} "
        f"({machine['cpu_capability']}), Python {machine['python']}.",
        "",
        "| mode | precision | backend | chunk | steps | threads | encode | structure | timbre refresh | "
        "step (B=3) | diffuse | decode | call (ms) | RTF | latency ms (frames) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        cells = [r["mode"], r["precision"], r["backend"], r["chunk"], r["steps"], r["threads"]]
        cells += [_fmt(r[k]) for k in COMPONENTS]
        cells += [_fmt(r["rtf"], 2), f"{r['latency_ms']:.1f} ({r['latency_frames']:.2f})"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    quality = {}
    for r in records:
        if r["precision"] == "int8" and "rel_error_audio" in r:
            quality[(r["mode"], r["chunk"])] = r
    if quality:
        lines += [
            "",
            "int8 against fp32 (relative L2 error, same inputs):",
            "",
            "| mode | chunk | velocity | latents | audio out | codec encode | codec decode |",
            "|---|---|---|---|---|---|---|",
        ]
        for (mode, chunk), r in quality.items():
            lines.append(f"| {mode} | {chunk} | " + " | ".join(f"{r[k]:.4f}" for k in QUALITY) + " |")
    memory = result["memory"]
    lines += ["", f"Peak resident memory of the bench process: {memory['peak_rss_mb']:.0f} MB."]
    for key, size in memory.get("ts_mb", {}).items():
        lines.append(f"nn~ export ({key}): {_fmt(size)} MB" if size is not None else f"nn~ export ({key}): -")
    return "\n".join(lines) + "\n"


def plot_report(result: dict[str, Any], path: str | Path) -> Path:
    """RTF against sampling steps on one thread: one panel per mode, one line per (chunk, precision)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    records = result["records"]
    modes = sorted({r["mode"] for r in records}) or ["audio"]
    one_thread = min((r["threads"] for r in records), default=1)
    figure, axes = plt.subplots(1, len(modes), figsize=(5 * len(modes), 4), squeeze=False)
    for axis, mode in zip(axes[0], modes):
        lines: dict[tuple[int, str], list[tuple[int, float]]] = {}
        for r in records:
            if r["mode"] == mode and r["threads"] == one_thread:
                lines.setdefault((r["chunk"], r["precision"]), []).append((r["steps"], r["rtf"]))
        for (chunk, precision), points in sorted(lines.items()):
            points.sort()
            axis.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                marker="o",
                label=f"chunk {chunk}, {precision}",
            )
        axis.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        axis.set_xscale("log", base=2)
        steps = sorted({r["steps"] for r in records})
        axis.set_xticks(steps, [str(n) for n in steps])
        axis.set_xlabel("sampling steps (guided, 3 branches)")
        axis.set_ylabel("real-time factor (lower is better)")
        axis.set_title(f"{mode} mode, {one_thread} thread(s)")
        axis.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
