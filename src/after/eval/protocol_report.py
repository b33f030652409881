"""Presenting a :func:`after.eval.protocol.run_protocol` result: markdown report, plots and JSON.

:func:`write_protocol_report` writes into one folder::

    report.md     checks (pass / fail / n/a), overall table with bootstrap intervals, FD-MFCC and
                  real-time factor, leakage probe, one per-family table per metric, notices
    <metric>.png  one bar chart per metric (per family, bootstrap whiskers)
    eval.json     the whole result (rows, summary, checks, ...)

Metrics that could not be measured (note/onset F1 without the transcription extra) stay in the
overall table as columns marked ``unavailable``, so a reader never mistakes them for zero.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from after.eval.checks import F1_METRICS, Check, checks_table
from after.eval.report import ALL_FAMILIES, LOWER_IS_BETTER, METRICS, Summary, family_table, plot_summary

log = logging.getLogger(__name__)

REPORT_FILE = "report.md"
JSON_FILE = "eval.json"


def summaries(result: Mapping[str, Any]) -> list[Summary]:
    """The result's summary entries as :class:`~after.eval.report.Summary` objects."""
    return [Summary(**entry) for entry in result["summary"]]


def checks_of(result: Mapping[str, Any]) -> list[Check]:
    """The result's checks as :class:`~after.eval.protocol.Check` objects."""
    return [Check(**entry) for entry in result["checks"]]


def unavailable_metrics(result: Mapping[str, Any]) -> tuple[str, ...]:
    """Metrics of the protocol that were not measured in ``result``."""
    return () if result.get("transcription") else F1_METRICS


def _system_order(systems: Sequence[str]) -> list[str]:
    trivial = ("copy_structure", "copy_timbre", "ground_truth")
    return sorted(s for s in set(systems) if s not in trivial) + [s for s in trivial if s in systems]


def overall_table(result: Mapping[str, Any]) -> str:
    """Markdown table over all families: one row per system, ``mean [low, high]`` per metric,
    ``unavailable`` for metrics not measured, then FD-MFCC and the real-time factor."""
    chosen = {(s.system, s.metric): s for s in summaries(result) if s.family == ALL_FAMILIES}
    missing = unavailable_metrics(result)
    metrics = [m for m in METRICS if m in missing or any(k[1] == m for k in chosen)]
    fd, speed = result.get("fd_mfcc", {}), result.get("speed", {})
    systems = _system_order([k[0] for k in chosen] + list(fd))
    header = [
        "system",
        *(m + (" ↓" if m in LOWER_IS_BETTER else " ↑") for m in metrics),
        "fd_mfcc ↓",
        "RTF ↓",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for system in systems:
        cells = [system]
        for metric in metrics:
            entry = chosen.get((system, metric))
            if metric in missing:
                cells.append("unavailable")
            else:
                cells.append(
                    "—" if entry is None else f"{entry.mean:.3f} [{entry.low:.3f}, {entry.high:.3f}]"
                )
        cells.append(f"{fd[system]:.2f}" if system in fd else "—")
        cells.append(f"{speed[system]['rtf']:.3f}" if system in speed else "—")
        lines.append("| " + " | ".join(cells) + " |")
    n = max((s.n for s in chosen.values()), default=0)
    return f"All families (n = {n} triplets per system)\n\n" + "\n".join(lines) + "\n"


def speed_table(result: Mapping[str, Any]) -> str:
    """Compute per second of audio of each model and codec system (offline calls)."""
    lines = [
        "| system | compute (s) | audio (s) | RTF (s per s) | algorithmic latency (ms) |",
        "|---|---|---|---|---|",
    ]
    for name, entry in result.get("speed", {}).items():
        latency = "—" if entry.get("latency_ms") is None else f"{entry['latency_ms']:.1f}"
        lines.append(
            f"| {name} | {entry['compute_s']:.2f} | {entry['audio_s']:.1f} | {entry['rtf']:.3f} | {latency} |"
        )
    return "\n".join(lines) + "\n"


def leakage_text(leakage: Mapping[str, Any] | None) -> str:
    """One paragraph on the leakage probe (structure codes ``s`` of the audio model)."""
    if leakage is None:
        return "No audio model: no structure codes to probe.\n"
    if leakage.get("status") != "measured":
        return f"Not measured: {leakage.get('reason', 'unknown reason')}.\n"
    return (
        f"A linear probe predicts the instrument {leakage['label']} from the time-pooled structure codes "
        f"s with held-out accuracy {leakage['accuracy']:.3f} against chance {leakage['chance']:.3f} "
        f"({leakage['n_classes']} classes, {leakage['n_train']} train / {leakage['n_test']} test clips). "
        "Near chance means s carries little timbre.\n"
    )


def protocol_markdown(result: Mapping[str, Any], plots: Mapping[str, str] | None = None) -> str:
    """The whole report as markdown; ``plots`` maps metrics to image file names to link."""
    models = ", ".join(f"{mode}: `{m['name']}`" for mode, m in result["models"].items())
    options = result["options"]
    if options.get("int8"):
        models += " (int8 weights)"
    parts = [
        "# Transfer evaluation\n",
        f"Models: {models}. {options['cases']} held-out triplets (seed {options['seed']}), "
        f"{options['clip_s']:g} s of notes each, rendered at {result['sample_rate']} Hz; "
        f"{len(result['families'])} target families: {', '.join(result['families'])}.\n",
    ]
    if result.get("notices"):
        parts.append("Notices:\n\n" + "\n".join(f"- {n}" for n in result["notices"]) + "\n")
    parts += ["## Checks\n", checks_table(checks_of(result)), "## Results\n", overall_table(result)]
    parts += [
        "## Speed\n",
        speed_table(result),
        "## Structure leakage probe\n",
        leakage_text(result.get("leakage")),
    ]
    parts.append("## Per family\n")
    summary = summaries(result)
    for metric in METRICS:
        if any(s.metric == metric for s in summary):
            parts.append(family_table(summary, metric))
            if plots and metric in plots:
                parts.append(f"![{metric}]({plots[metric]})\n")
        elif metric in unavailable_metrics(result):
            parts.append(f"{metric}: unavailable\n")
    return "\n".join(parts)


def write_result_json(result: Mapping[str, Any], path: str | Path) -> Path:
    """Write the result as JSON (non-finite numbers become null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(result), indent=1) + "\n", encoding="utf-8")
    return path


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_protocol_report(result: Mapping[str, Any], out_dir: str | Path, plots: bool = True) -> Path:
    """Write ``report.md``, one PNG per metric (when ``plots``) and ``eval.json`` into ``out_dir``;
    returns the markdown path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summaries(result)
    files = {}
    if plots:
        for metric in METRICS:
            if any(s.metric == metric for s in summary):
                files[metric] = plot_summary(summary, metric, out_dir / f"{metric}.png").name
    path = out_dir / REPORT_FILE
    path.write_text(protocol_markdown(result, files), encoding="utf-8")
    write_result_json(result, out_dir / JSON_FILE)
    log.info("wrote %s", path)
    return path


def run_eval(
    model: str | None = None,
    midi_model: str | None = None,
    options: Any = None,
    report_dir: str | Path | None = None,
    json_path: str | Path | None = None,
    model_card: str | Path | None = None,
    training_run: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """``after eval``: load the models (:func:`after.eval.protocol.load_models`), run the protocol,
    write the report folder, the JSON and (if asked) a model card for the first model, which also
    measures its streaming speed. Returns the result."""
    from after.eval.model_card import measure_speed, model_facts, training_facts, write_model_card
    from after.eval.protocol import ProtocolOptions, load_models, run_protocol

    audio, midi = load_models(model, midi_model)
    result = run_protocol(audio, midi, options or ProtocolOptions(), progress=progress)
    if report_dir is not None:
        write_protocol_report(result, report_dir)
    if json_path is not None:
        write_result_json(result, json_path)
    if model_card is not None:
        bundle = audio if audio is not None else midi
        speed = measure_speed(bundle, steps=result["options"]["steps"])
        result["model_card"] = str(
            write_model_card(
                model_card,
                model_facts(bundle),
                training=training_facts(bundle, training_run),
                evaluation=result,
                speed=speed,
            )
        )
    return result
