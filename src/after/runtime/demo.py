"""``after demo``: render example inputs, run the model(s) on them and write a page to listen to.

For a seed, :func:`run_demo`

1. draws MIDI phrases from the procedural generator and plays them with a few General MIDI
   instruments of the training soundfonts (:mod:`after.runtime.demo_inputs`): structure phrases
   (piano, guitar, marimba) and timbre references (flute, trumpet, violin, ...);
2. for each model (audio-to-audio and/or MIDI-to-audio) generates, block by block through the
   streaming pipeline: every structure phrase with every timbre reference, the first phrase with a
   timbre vector given by hand, and all phrases in a row with a timbre that walks across the 2-D
   timbre map (:mod:`after.runtime.demo_walk`), one map position per block;
3. writes the audio, one spectrogram figure per output (structure, timbre, output on one colour
   scale), the map with the walk drawn on it, ``demo.json`` (everything below) and ``index.html``
   (:mod:`after.runtime.demo_page`).

Every block is timed: the page reports the compute time per second of audio (real-time factor;
below 1 is faster than real time), the slowest block against the block's duration, and the
algorithmic latency (one block plus the codec's delay). The audio depends only on the seed and
the settings; the timings do not enter it.

Models: :func:`find_demo_models` takes ``--model`` / ``--midi-model`` when given and otherwise the
packaged models named in :data:`DEFAULT_MODELS`; with only one mode available the demo runs that
mode and says so; with none it stops with one :class:`~after.errors.ModelFileError`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from after.errors import BadInputError, ModelFileError
from after.runtime.bundle import DEFAULT_MIDI_MODEL_NAME, DEFAULT_MODEL_NAME, ModelBundle

log = logging.getLogger(__name__)

MODES = ("audio", "midi")
DEFAULT_MODELS: dict[str, str] = {"audio": DEFAULT_MODEL_NAME, "midi": DEFAULT_MIDI_MODEL_NAME}
"""Packaged model (folder of ``src/after/models/``) the demo uses for each mode."""
MODE_TITLES = {"audio": "audio to audio", "midi": "MIDI to audio"}
AUDIO_FORMATS = ("wav", "flac")


@dataclass(frozen=True)
class DemoConfig:
    """What the demo renders. ``steps`` / ``guidance_*`` / ``chunk`` None = the model's own."""

    seed: int = 0
    steps: int | None = None
    guidance_timbre: float | None = None
    guidance_structure: float | None = None
    chunk: int | None = None
    phrase_seconds: float = 4.0
    n_phrases: int = 2
    n_references: int = 3
    audio_format: str = "wav"
    map_fit_steps: int = 1000  # only for a model without its own timbre map


def check_config(config: DemoConfig) -> None:
    """Refuse bad values with a message naming them."""
    from after.runtime.demo_inputs import TIMBRE_INSTRUMENTS

    if not (np.isfinite(config.phrase_seconds) and 0.5 <= config.phrase_seconds <= 30.0):
        raise BadInputError(f"phrase seconds={config.phrase_seconds}: expected 0.5 to 30 seconds")
    if not 1 <= config.n_phrases <= 8:
        raise BadInputError(f"phrases={config.n_phrases}: expected 1 to 8")
    if not 1 <= config.n_references <= len(TIMBRE_INSTRUMENTS):
        raise BadInputError(f"references={config.n_references}: expected 1 to {len(TIMBRE_INSTRUMENTS)}")
    from after.runtime.protocol import check_parameter

    for name in ("steps", "guidance_timbre", "guidance_structure"):
        if getattr(config, name) is not None:
            check_parameter(name, getattr(config, name))
    if config.audio_format not in AUDIO_FORMATS:
        raise BadInputError(
            f"audio format {config.audio_format!r}: expected one of {', '.join(AUDIO_FORMATS)}"
        )


def find_demo_models(
    model: str | Path | None = None, midi_model: str | Path | None = None
) -> dict[str, ModelBundle]:
    """The models to demonstrate, by mode (``"audio"`` then ``"midi"``).

    ``model`` may be a model of either mode, ``midi_model`` must be a MIDI model; a mode given
    neither uses the packaged :data:`DEFAULT_MODELS` entry when it is installed. Raises
    :class:`ModelFileError` when no model at all is available.
    """
    from after.runtime import bundle as bundles

    chosen: dict[str, ModelBundle] = {}
    if model is not None:
        loaded = bundles.load_bundle(model)
        chosen[loaded.mode] = loaded
    if midi_model is not None:
        loaded = bundles.load_bundle(midi_model)
        if loaded.mode != "midi":
            raise BadInputError(
                f"--midi-model {midi_model}: {loaded.name!r} is an audio model, not a MIDI model"
            )
        if "midi" in chosen:
            raise BadInputError(
                "--model and --midi-model are both MIDI models: give an audio model with --model"
            )
        chosen["midi"] = loaded
    for mode in MODES:
        folder = bundles.models_dir() / DEFAULT_MODELS[mode]
        if mode not in chosen and (folder / bundles.MODEL_FILE).is_file():
            loaded = bundles.load_bundle(DEFAULT_MODELS[mode])
            if loaded.mode != mode:
                raise ModelFileError(f"{folder}: packaged model is a {loaded.mode} model, expected {mode}")
            chosen[mode] = loaded
    if not chosen:
        names = " or ".join(str(bundles.models_dir() / DEFAULT_MODELS[m]) for m in MODES)
        raise ModelFileError(
            f"no default model is installed ({names}); "
            "give a model with --model PATH and/or --midi-model PATH (released model or run folder)"
        )
    for mode in MODES:
        if mode not in chosen:
            log.warning(
                "no %s model available: the demo shows %s only", mode, MODE_TITLES[next(iter(chosen))]
            )
    return {mode: chosen[mode] for mode in MODES if mode in chosen}


# -- results -----------------------------------------------------------------------------------------


@dataclass
class ItemResult:
    """One generated output; paths are relative to the demo folder."""

    mode: str
    kind: str  # "reference", "vector" or "walk"
    title: str
    structure: str  # phrase name(s)
    timbre: str  # what gave the timbre
    output: str
    figure: str
    structure_file: str  # the structure input: audio (audio mode) or MIDI file
    reference_file: str | None
    seconds: float
    compute_s: float
    real_time_factor: float
    worst_block_ms: float
    gain: float  # applied to keep the peak at OUTPUT_PEAK (1.0 = untouched)
    timbre_vector: list[float] | None = None


@dataclass
class ModeResult:
    """One model's part of the demo: settings, latency, measurements and items."""

    mode: str
    model_name: str
    model_source: str | None
    sample_rate: int
    settings: dict[str, Any]
    block_ms: float
    codec_latency_ms: float
    latency_ms: float
    real_time_factor: float = 0.0
    worst_block_ms: float = 0.0
    map_figure: str = ""
    map_fitted: bool = False
    walk_waypoints: list[list[float]] = field(default_factory=list)
    walk_positions: list[list[float]] = field(default_factory=list)
    walk_vectors: list[list[float]] = field(default_factory=list)
    items: list[ItemResult] = field(default_factory=list)


@dataclass
class DemoReport:
    """Everything the page shows (also written as ``demo.json``)."""

    seed: int
    phrase_seconds: float
    phrases: list[dict[str, Any]]
    references: list[dict[str, Any]]
    modes: list[ModeResult]
    notes: list[str]
    page: str = "index.html"


# -- running ------------------------------------------------------------------------------------------


def run_demo(
    out_dir: str | Path,
    bundles: Mapping[str, ModelBundle],
    config: DemoConfig = DemoConfig(),
    progress: bool = True,
    notes: Sequence[str] = (),
) -> DemoReport:
    """Render the demo of ``bundles`` (by mode, see :func:`find_demo_models`) into ``out_dir``:
    inputs, outputs, figures, ``demo.json`` and ``index.html``; returns what the page shows."""
    from tqdm import tqdm

    from after.runtime.demo_page import write_page
    from after.runtime.demo_plan import ModePlan, write_inputs

    check_config(config)
    if not bundles:
        raise ModelFileError("no model to demonstrate")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rate = max(bundle.sample_rate for bundle in bundles.values())
    inputs = write_inputs(out, config, rate)
    plans = [ModePlan(bundle, config, inputs) for bundle in bundles.values()]
    with tqdm(
        total=sum(len(plan.jobs) for plan in plans), desc="demo", unit="item", disable=not progress
    ) as bar:
        for plan in plans:
            for job in plan.jobs:
                bar.set_postfix_str(f"{plan.mode}: {job.title}", refresh=False)
                plan.run(job, out)
                bar.update(1)
    modes = [plan.finish(out) for plan in plans]
    report = DemoReport(
        config.seed, config.phrase_seconds, inputs.phrase_rows, inputs.reference_rows, modes, list(notes)
    )
    if len(modes) == 1:
        report.notes.append(
            f"Only a {MODE_TITLES[modes[0].mode]} model is available: this page shows that mode only."
        )
    (out / "demo.json").write_text(json.dumps(dataclasses.asdict(report), indent=2) + "\n")
    write_page(out, report)
    log.info("demo written to %s", out / report.page)
    return report


def demo_command(
    out_dir: str | Path,
    model: str | Path | None = None,
    midi_model: str | Path | None = None,
    config: DemoConfig = DemoConfig(),
    progress: bool = True,
) -> Path:
    """``after demo``: find the models, run the demo, return the page's path."""
    check_config(config)
    bundles = find_demo_models(model, midi_model)
    report = run_demo(out_dir, bundles, config, progress)
    return Path(out_dir) / report.page
