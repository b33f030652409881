"""Release checks of a model from the overall means of the evaluation protocol.

:func:`evaluate_checks` reads ``table[system][metric]`` (means over all triplets, see
:func:`after.eval.protocol.run_protocol`) and returns one :class:`Check` per requirement of
:data:`CHECKS`. Every check is ``pass``, ``fail`` or ``n/a`` (not measurable: the system was not
evaluated, a metric is missing, or the triplets cover too few families), with the value and the
threshold it was judged on and a sentence saying what was compared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

AUDIO_SYSTEM = "audio_to_audio"
MIDI_SYSTEM = "midi_to_audio"
CODEC_SYSTEM = "codec_reconstruction"
CODEC_MIDI_SYSTEM = "codec_reconstruction_midi"
MIDI_F1_RATIO = 0.8
"""The MIDI model's note F1 must reach this share of the ground-truth ceiling."""
CODEC_F1_RATIO = 0.9
"""Codec reconstructions' note F1 must reach this share of the ceiling."""
TIMBRE_ID_MIN = 0.7
"""Timbre-ID accuracy (by family) a model must reach ..."""
MIN_FAMILIES = 10
"""... over triplets covering at least this many instrument families."""
ROUNDING = 1e-9
"""Slack on every threshold, so that a value exactly at it passes despite float rounding."""
CHECKS = {
    "midi_note_f1": f"MIDI-to-audio note F1 >= {MIDI_F1_RATIO} x ground-truth ceiling",
    "timbre_id": f"timbre-ID accuracy >= {TIMBRE_ID_MIN} over >= {MIN_FAMILIES} families",
    "beats_copies": "audio-to-audio beats both copies: note F1 above copy_timbre, "
    "MFCC distance below and timbre-ID above copy_structure",
    "codec_note_f1": f"codec reconstruction note F1 >= {CODEC_F1_RATIO} x ground-truth ceiling",
}
F1_METRICS = ("note_f1", "onset_f1")


@dataclass(frozen=True)
class Check:
    """One release check: ``status`` is ``pass``, ``fail`` or ``n/a``; ``value`` is compared with
    ``threshold`` (None when not measurable); ``detail`` says what was compared."""

    name: str
    system: str
    status: str
    value: float | None
    threshold: float | None
    detail: str


# -- checks ------------------------------------------------------------------------------------------


def _f1_ratio_check(name: str, system: str, table: Mapping[str, Mapping[str, float]], ratio: float) -> Check:
    if system not in table:
        return Check(name, system, "n/a", None, ratio, "system not evaluated")
    f1, ceiling = table[system].get("note_f1"), table.get("ground_truth", {}).get("note_f1")
    if f1 is None or ceiling is None:
        return Check(name, system, "n/a", None, ratio, "note F1 unavailable (no transcription)")
    if ceiling <= 0.0:
        return Check(name, system, "n/a", None, ratio, "ground-truth ceiling is 0: no note was heard")
    value = f1 / ceiling
    detail = f"note F1 {f1:.3f} / ceiling {ceiling:.3f}"
    return Check(name, system, "pass" if value >= ratio - ROUNDING else "fail", value, ratio, detail)


def _timbre_check(system: str, table: Mapping[str, Mapping[str, float]], n_families: int) -> Check:
    if system not in table:
        return Check("timbre_id", system, "n/a", None, TIMBRE_ID_MIN, "system not evaluated")
    accuracy = table[system].get("timbre_id")
    if accuracy is None:
        return Check("timbre_id", system, "n/a", None, TIMBRE_ID_MIN, "timbre-ID not measured")
    detail = f"accuracy {accuracy:.3f} over {n_families} families"
    ceiling = table.get("ground_truth", {}).get("timbre_id")
    if ceiling is not None:
        detail += f" (ground truth {ceiling:.3f})"
    if n_families < MIN_FAMILIES:
        return Check(
            "timbre_id", system, "n/a", accuracy, TIMBRE_ID_MIN, detail + f" (needs >= {MIN_FAMILIES})"
        )
    return Check(
        "timbre_id",
        system,
        "pass" if accuracy >= TIMBRE_ID_MIN - ROUNDING else "fail",
        accuracy,
        TIMBRE_ID_MIN,
        detail,
    )


def _beats_copies_check(table: Mapping[str, Mapping[str, float]]) -> Check:
    name, system = "beats_copies", AUDIO_SYSTEM
    if system not in table:
        return Check(name, system, "n/a", None, None, "system not evaluated")
    model = table[system]
    copy_structure, copy_timbre = table.get("copy_structure", {}), table.get("copy_timbre", {})
    comparisons = [  # (metric, reference row, its values, True if higher is better)
        ("note_f1", "copy_timbre", copy_timbre, True),
        ("mfcc_distance", "copy_structure", copy_structure, False),
        ("timbre_id", "copy_structure", copy_structure, True),
    ]
    parts, wins, missing = [], 0, []
    for metric, row, reference, higher in comparisons:
        if metric not in model or metric not in reference:
            missing.append(metric)
            continue
        won = model[metric] > reference[metric] if higher else model[metric] < reference[metric]
        wins += won
        sign = ">" if higher else "<"
        answer = "yes" if won else "no"
        parts.append(f"{metric} {model[metric]:.3f} {sign} {row} {reference[metric]:.3f}: {answer}")
    measured = len(comparisons) - len(missing)
    if missing:
        parts.append(f"not measured: {', '.join(missing)}")
    if wins < measured:
        return Check(name, system, "fail", float(wins), float(len(comparisons)), "; ".join(parts))
    status = "n/a" if missing else "pass"
    return Check(name, system, status, float(wins), float(len(comparisons)), "; ".join(parts))


def evaluate_checks(table: Mapping[str, Mapping[str, float]], n_families: int) -> list[Check]:
    """The release checks (:data:`CHECKS`) from overall means ``table[system][metric]``.

    ``n_families`` is the number of target families the triplets cover. A check whose system or
    metric is missing is ``n/a``; ``beats_copies`` fails as soon as one measured comparison is lost.
    """
    checks = [_f1_ratio_check("midi_note_f1", MIDI_SYSTEM, table, MIDI_F1_RATIO)]
    checks += [_timbre_check(system, table, n_families) for system in (AUDIO_SYSTEM, MIDI_SYSTEM)]
    checks.append(_beats_copies_check(table))
    codecs = [s for s in (CODEC_SYSTEM, CODEC_MIDI_SYSTEM) if s in table] or [CODEC_SYSTEM]
    checks += [_f1_ratio_check("codec_note_f1", s, table, CODEC_F1_RATIO) for s in codecs]
    return checks


def verdict(checks: Sequence[Check]) -> str:
    """``fail`` if any check fails, ``pass`` if all pass, else ``incomplete``."""
    statuses = {c.status for c in checks}
    return "fail" if "fail" in statuses else "pass" if statuses == {"pass"} else "incomplete"


def checks_table(checks: Sequence[Check]) -> str:
    """Markdown table of the checks and the overall verdict."""
    lines = ["| check | system | value | needed | result | detail |", "|---|---|---|---|---|---|"]
    for c in checks:
        value = "—" if c.value is None else f"{c.value:.3f}"
        needed = "—" if c.threshold is None else f"{c.threshold:g}"
        lines.append(f"| {c.name} | {c.system} | {value} | {needed} | **{c.status}** | {c.detail} |")
    return "\n".join(lines) + f"\n\nOverall: **{verdict(checks)}**\n"


def overall_means(summary: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """``{system: {metric: mean}}`` over all families from summary entries (dicts of
    :class:`after.eval.report.Summary`)."""
    from after.eval.report import ALL_FAMILIES

    table: dict[str, dict[str, float]] = {}
    for entry in summary:
        if entry["family"] == ALL_FAMILIES:
            table.setdefault(entry["system"], {})[entry["metric"]] = float(entry["mean"])
    return table
