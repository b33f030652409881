"""Scoring systems on rendered triplets and reporting the results.

A *system* turns a :class:`~after.eval.triplets.RenderedTriplet` into audio. Next to any model
we always score three trivial systems (:func:`trivial_outputs`): ``copy_structure`` (return the
content input), ``copy_timbre`` (return the style input) and ``ground_truth`` (return the
target). A model is interesting only where it beats both copies at once.

:func:`score_output` gives one *row* (a dict) per (system, triplet): LSD and MFCC distance to the
target, note/onset F1 of the transcribed output against the structure MIDI (when transcription is
installed) and whether a timbre-ID classifier recognises the target program. :func:`summarise`
turns rows into means with bootstrap intervals, over all triplets and per target family;
:func:`markdown_table` and :func:`plot_summary` present them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from after.eval.metrics import bootstrap_ci, fd_mfcc, lsd, mfcc_distance, note_f1, onset_f1
from after.eval.triplets import RenderedTriplet

logger = logging.getLogger(__name__)

TRIVIAL_SYSTEMS: tuple[str, ...] = ("copy_structure", "copy_timbre", "ground_truth")
METRICS: tuple[str, ...] = ("lsd", "mfcc_distance", "note_f1", "onset_f1", "timbre_id")
LOWER_IS_BETTER = frozenset({"lsd", "mfcc_distance", "fd_mfcc"})
ALL_FAMILIES = "all"


def trivial_outputs(rendered: RenderedTriplet) -> dict[str, np.ndarray]:
    """The three reference systems' outputs for one triplet (see module doc)."""
    return {
        "copy_structure": rendered.content,
        "copy_timbre": rendered.style,
        "ground_truth": rendered.target,
    }


def score_output(
    system: str,
    output: np.ndarray,
    rendered: RenderedTriplet,
    transcribe: bool = True,
    timbre_classifier: Any = None,
    timbre_by: str = "program",
) -> dict[str, Any]:
    """One result row for ``output`` (``[T]`` at ``rendered.sample_rate``) of ``system``.

    Keys: system, triplet, family, content_program, target_program, lsd, mfcc_distance, and when
    asked note_f1, onset_f1 (transcription needed) and timbre_id: 1.0 if ``timbre_classifier``
    predicts the target's program (``timbre_by="program"``, classifier trained on program numbers)
    or family (``timbre_by="family"``, trained on family names), else 0.0.
    """
    triplet, rate = rendered.triplet, rendered.sample_rate
    row: dict[str, Any] = {
        "system": system,
        "triplet": triplet.index,
        "family": triplet.family,
        "content_program": triplet.content_program,
        "target_program": triplet.target_program,
        "lsd": lsd(output, rendered.target, rate),
        "mfcc_distance": mfcc_distance(output, rendered.target, rate),
    }
    if transcribe:
        from after.data.transcription import transcribe as transcribe_audio

        heard = transcribe_audio(output, rate)
        row["note_f1"] = note_f1(heard, triplet.content_notes)["f1"]
        row["onset_f1"] = onset_f1(heard, triplet.content_notes)["f1"]
    if timbre_classifier is not None:
        if timbre_by not in ("program", "family"):
            raise ValueError(f"timbre_by={timbre_by!r}: expected 'program' or 'family'")
        expected = triplet.target_program if timbre_by == "program" else triplet.family
        row["timbre_id"] = float(timbre_classifier.predict([output], rate)[0] == expected)
    return row


def score_systems(
    rendered: Sequence[RenderedTriplet],
    systems: Mapping[str, Any] | None = None,
    transcribe: bool = True,
    timbre_classifier: Any = None,
    timbre_by: str = "program",
) -> list[dict[str, Any]]:
    """Rows for every triplet and every system: the trivial ones plus ``systems`` (name ->
    callable taking a RenderedTriplet and returning audio ``[T]`` at its sample rate)."""
    rows = []
    for item in rendered:
        outputs = trivial_outputs(item)
        for name, system in (systems or {}).items():
            outputs[name] = np.asarray(system(item), dtype=np.float32)
        for name, audio in outputs.items():
            rows.append(score_output(name, audio, item, transcribe, timbre_classifier, timbre_by))
    return rows


def fd_mfcc_by_system(
    rendered: Sequence[RenderedTriplet], systems: Mapping[str, Any] | None = None
) -> dict[str, float]:
    """FD-MFCC of each system's set of outputs against the set of targets (one number per system)."""
    outputs: dict[str, list[np.ndarray]] = {}
    for item in rendered:
        produced = trivial_outputs(item)
        for name, system in (systems or {}).items():
            produced[name] = np.asarray(system(item), dtype=np.float32)
        for name, audio in produced.items():
            outputs.setdefault(name, []).append(audio)
    targets = [item.target for item in rendered]
    rate = rendered[0].sample_rate
    return {name: fd_mfcc(clips, targets, rate) for name, clips in outputs.items()}


@dataclass(frozen=True)
class Summary:
    """Mean of one metric for one system over one family (or ``"all"``) with its bootstrap interval."""

    system: str
    family: str
    metric: str
    mean: float
    low: float
    high: float
    n: int


def summarise(
    rows: Sequence[Mapping[str, Any]],
    metrics: Sequence[str] = METRICS,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> list[Summary]:
    """Means and ``1 - alpha`` bootstrap intervals of each metric, per system, over all triplets
    and per family. Metrics missing from the rows are skipped."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["system"], ALL_FAMILIES), []).append(row)
        groups.setdefault((row["system"], row["family"]), []).append(row)
    summary = []
    for (system, family), members in groups.items():
        for metric in metrics:
            values = [float(r[metric]) for r in members if metric in r and r[metric] is not None]
            values = [v for v in values if math.isfinite(v)]
            if not values:
                continue
            mean, low, high = bootstrap_ci(values, n=n_boot, alpha=alpha, seed=seed)
            summary.append(Summary(system, family, metric, mean, low, high, len(values)))
    return summary


def _system_order(systems: Sequence[str]) -> list[str]:
    models = sorted(s for s in set(systems) if s not in TRIVIAL_SYSTEMS)
    return models + [s for s in TRIVIAL_SYSTEMS if s in systems]


def markdown_table(
    summary: Sequence[Summary], family: str = ALL_FAMILIES, fd: Mapping[str, float] | None = None
) -> str:
    """A markdown table for one family (default all): one row per system (models first, then
    the trivial systems), one column per metric as ``mean [low, high]``; FD-MFCC last if given."""
    chosen = [s for s in summary if s.family == family]
    metrics = [
        m
        for m in (*METRICS, *sorted({s.metric for s in chosen} - set(METRICS)))
        if any(s.metric == m for s in chosen)
    ]
    systems = _system_order([s.system for s in chosen] + list(fd or {}))
    arrows = {m: " ↓" if m in LOWER_IS_BETTER else " ↑" for m in [*metrics, "fd_mfcc"]}
    header = ["system", *(m + arrows[m] for m in metrics)] + (["fd_mfcc ↓"] if fd else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lookup = {(s.system, s.metric): s for s in chosen}
    for system in systems:
        cells = [system]
        for metric in metrics:
            entry = lookup.get((system, metric))
            cells.append("—" if entry is None else f"{entry.mean:.3f} [{entry.low:.3f}, {entry.high:.3f}]")
        if fd:
            cells.append(f"{fd[system]:.2f}" if system in fd else "—")
        lines.append("| " + " | ".join(cells) + " |")
    n = max((s.n for s in chosen), default=0)
    return f"Family: {family} (n = {n} triplets per system)\n\n" + "\n".join(lines) + "\n"


def family_table(summary: Sequence[Summary], metric: str) -> str:
    """Markdown table of one metric: one row per family, one column per system (mean only)."""
    chosen = [s for s in summary if s.metric == metric]
    systems = _system_order([s.system for s in chosen])
    families = [*sorted({s.family for s in chosen} - {ALL_FAMILIES}), ALL_FAMILIES]
    lookup = {(s.system, s.family): s.mean for s in chosen}
    lines = ["| family | " + " | ".join(systems) + " |", "|" + "---|" * (len(systems) + 1)]
    for family in families:
        cells = [f"{lookup[(s, family)]:.3f}" if (s, family) in lookup else "—" for s in systems]
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    return f"{metric}{' (lower is better)' if metric in LOWER_IS_BETTER else ' (higher is better)'}\n\n" + (
        "\n".join(lines) + "\n"
    )


def plot_summary(summary: Sequence[Summary], metric: str, path: str | Path) -> Path:
    """Grouped bar chart of ``metric`` per family (and all), one bar per system, with bootstrap
    interval whiskers; written to ``path`` (PNG/PDF/SVG by extension)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [s for s in summary if s.metric == metric]
    systems = _system_order([s.system for s in chosen])
    families = [*sorted({s.family for s in chosen} - {ALL_FAMILIES}), ALL_FAMILIES]
    lookup = {(s.system, s.family): s for s in chosen}
    width = 0.8 / max(len(systems), 1)
    figure, axes = plt.subplots(figsize=(min(14.0, max(6.0, 0.3 * len(families) * len(systems))), 4.5))
    positions = np.arange(len(families))
    for k, system in enumerate(systems):
        entries = [lookup.get((system, f)) for f in families]
        means = [e.mean if e else np.nan for e in entries]
        errors = np.array([[e.mean - e.low, e.high - e.mean] if e else [0.0, 0.0] for e in entries]).T
        axes.bar(
            positions + (k - (len(systems) - 1) / 2) * width,
            means,
            width,
            yerr=errors,
            label=system,
            capsize=2,
        )
    axes.set_xticks(positions, families, rotation=45, ha="right")
    axes.set_ylabel(metric + (" (lower is better)" if metric in LOWER_IS_BETTER else " (higher is better)"))
    axes.legend(fontsize="small")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def write_report(
    summary: Sequence[Summary], out_dir: str | Path, fd: Mapping[str, float] | None = None
) -> Path:
    """Write ``report.md`` (overall table, one per-family table per metric) and one PNG plot per
    metric into ``out_dir``; returns the markdown path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = [m for m in METRICS if any(s.metric == m for s in summary)]
    parts = ["# Transfer evaluation\n", markdown_table(summary, fd=fd)]
    for metric in metrics:
        parts.append(family_table(summary, metric))
        plot = plot_summary(summary, metric, out_dir / f"{metric}.png")
        parts.append(f"![{metric}]({plot.name})\n")
    path = out_dir / "report.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    logger.info("wrote %s", path)
    return path
