"""The demo's work: the shared inputs (:func:`write_inputs`) and, per model, the list of outputs to
generate and how (:class:`ModePlan`), with block-by-block timing (:func:`stream_blocks`).

See :mod:`after.runtime.demo` for what the demo shows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from after.errors import AfterError
from after.runtime.bundle import ModelBundle
from after.runtime.demo import DemoConfig, ItemResult, ModeResult
from after.runtime.demo_inputs import Phrase

log = logging.getLogger(__name__)

OUTPUT_PEAK = 0.99  # louder outputs are scaled down to this peak (the gain is reported)
MANUAL_RANGE = 0.7  # the hand-given timbre vector's values lie in [-0.7, 0.7]


def slug(text: str) -> str:
    """``"Church organ"`` -> ``"church-organ"`` (for file names)."""
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


@dataclass
class DemoInputs:
    """The rendered inputs (at ``rate``) and the rows the page lists (paths relative to the demo)."""

    rate: int
    phrases: list[Phrase]
    structure_audio: list[np.ndarray]  # per phrase, [T]
    reference_audio: list[np.ndarray]  # per reference, [T]
    phrase_rows: list[dict[str, Any]]
    reference_rows: list[dict[str, Any]]
    walk_midi: str
    walk_audio: str


def write_inputs(out: Path, config: DemoConfig, rate: int) -> DemoInputs:
    """Draw the phrases and the references for ``config.seed``, play them at ``rate`` Hz and write
    them under ``out/inputs/`` (MIDI files, the structure renderings, the references, and the
    phrases in a row that the walk plays)."""
    from after.data.audio import save_audio
    from after.data.midi import save_notes
    from after.runtime.demo_inputs import (
        STRUCTURE_INSTRUMENTS,
        TIMBRE_INSTRUMENTS,
        PhraseRenderer,
        make_phrases,
    )

    rng = np.random.default_rng(config.seed)
    phrases = make_phrases(rng, config.n_phrases, config.phrase_seconds)
    reference_phrases = make_phrases(rng, config.n_references, config.phrase_seconds, prefix="reference")
    players = [STRUCTURE_INSTRUMENTS[k % len(STRUCTURE_INSTRUMENTS)] for k in range(len(phrases))]
    instruments = TIMBRE_INSTRUMENTS[: config.n_references]
    renderer = PhraseRenderer(rate)
    try:
        structure_audio = [renderer.render(p, i) for p, i in zip(phrases, players)]
        reference_audio = [renderer.render(p, i) for p, i in zip(reference_phrases, instruments)]
    finally:
        renderer.close()
    ext = config.audio_format
    phrase_rows, reference_rows = [], []
    for phrase, player, audio in zip(phrases, players, structure_audio):
        midi, wav = f"inputs/{phrase.name}.mid", f"inputs/{phrase.name}-{slug(player.name)}.{ext}"
        save_notes(out / midi, phrase.notes, phrase.tempo_bpm)
        save_audio(out / wav, audio, rate)
        phrase_rows.append(
            {"name": phrase.name, "style": phrase.style, "notes": len(phrase.notes), "midi": midi,
             "audio": wav, "instrument": player.name, "soundfont": player.soundfont}
        )  # fmt: skip
    for index, (instrument, audio) in enumerate(zip(instruments, reference_audio)):
        wav = f"inputs/reference{index + 1}-{slug(instrument.name)}.{ext}"
        save_audio(out / wav, audio, rate)
        reference_rows.append(
            {"name": instrument.name, "program": instrument.program, "soundfont": instrument.soundfont,
             "audio": wav}
        )  # fmt: skip
    walk_midi, walk_audio = "inputs/walk.mid", f"inputs/walk-structure.{ext}"
    walk_notes = [n for k, p in enumerate(phrases) for n in p.shifted(k * config.phrase_seconds)]
    save_notes(out / walk_midi, walk_notes, phrases[0].tempo_bpm)
    save_audio(out / walk_audio, np.concatenate(structure_audio), rate)
    return DemoInputs(
        rate, phrases, structure_audio, reference_audio, phrase_rows, reference_rows, walk_midi, walk_audio
    )


def stream_blocks(
    pipeline: Any, structure: np.ndarray, timbres: np.ndarray | None = None
) -> tuple[np.ndarray, list[float]]:
    """Generate block by block on a fresh stream, timing each block.

    Args:
        pipeline: an audio or MIDI pipeline (:mod:`after.runtime.pipeline`).
        structure: audio ``[T]`` (audio mode) or a piano roll ``[2, 128, L]`` with L a multiple of
            the pipeline's chunk (MIDI mode).
        timbres: optional ``[n_blocks, ZT]`` timbre vector per block (else the pipeline's timbre).
    Returns:
        ``(audio [1, n_blocks * block_size], seconds spent on each block)``.
    """
    import torch

    if pipeline.mode == "audio":
        parts = pipeline.blocks(structure)
    else:
        roll = np.asarray(structure, dtype=np.float32)
        step = pipeline.chunk
        parts = [np.ascontiguousarray(roll[:, :, i : i + step]) for i in range(0, roll.shape[2], step)]
    if timbres is not None and len(timbres) != len(parts):
        raise ValueError(f"{len(timbres)} timbre vectors for {len(parts)} blocks")
    pipeline.reset()
    outputs, seconds = [], []
    for index, part in enumerate(parts):
        if timbres is not None:
            pipeline.set_timbre_vector(timbres[index])
        start = time.perf_counter()
        if pipeline.mode == "audio":
            out = pipeline.process(part)
        else:
            with torch.no_grad():
                s = pipeline.engine.structure_from_roll(torch.from_numpy(part)[None])  # [1, ZS, chunk]
                out = pipeline.engine.decode(pipeline.engine.diffuse(s, pipeline.timbre))[0].numpy()
        seconds.append(time.perf_counter() - start)
        outputs.append(out)
    return np.concatenate(outputs, axis=1).astype(np.float32), seconds


def n_blocks(pipeline: Any, structure: np.ndarray) -> int:
    """How many blocks :func:`stream_blocks` cuts ``structure`` into."""
    if pipeline.mode == "audio":
        return len(pipeline.blocks(structure))
    return int(np.asarray(structure).shape[2]) // pipeline.chunk


def _fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    flat = np.asarray(audio, dtype=np.float32).reshape(-1)
    return np.pad(flat[:length], (0, max(0, length - flat.size)))


@dataclass(frozen=True)
class Job:
    """One output to generate: ``phrase`` None = all phrases in a row (the walk)."""

    kind: str  # "reference", "vector" or "walk"
    key: str
    title: str
    phrase: int | None
    reference: int | None = None


class ModePlan:
    """The outputs of one model: its pipeline, its inputs at its rate, its walk, its jobs."""

    def __init__(self, bundle: ModelBundle, config: DemoConfig, inputs: DemoInputs) -> None:
        from after.data.audio import resample
        from after.runtime.demo_walk import (
            map_for_walk,
            map_to_vectors,
            vectors_to_map,
            walk_positions,
            walk_waypoints,
        )
        from after.runtime.pipeline import build_pipeline

        self.mode = bundle.mode
        self.config = config
        self.inputs = inputs
        pipeline = build_pipeline(
            bundle,
            chunk=config.chunk,
            steps=config.steps,
            guidance_timbre=config.guidance_timbre,
            guidance_structure=config.guidance_structure,
            seed=config.seed,
        )
        self.pipeline = pipeline
        self.rate = rate = bundle.sample_rate
        phrases = inputs.phrases
        self.length = round(config.phrase_seconds * rate)
        self.references = [
            _fit_length(resample(a, inputs.rate, rate), self.length) for a in inputs.reference_audio
        ]
        if self.mode == "audio":
            self.structures = [
                _fit_length(resample(a, inputs.rate, rate), self.length) for a in inputs.structure_audio
            ]
            self.walk_structure = np.concatenate(self.structures)
        else:
            self.structures = [pipeline.roll_of_notes(p.notes, p.seconds) for p in phrases]
            notes = [n for k, p in enumerate(phrases) for n in p.shifted(k * config.phrase_seconds)]
            self.walk_structure = pipeline.roll_of_notes(notes, config.phrase_seconds * len(phrases))
        self.reference_vectors = np.stack([pipeline.reference_timbre(a)[0].numpy() for a in self.references])
        names = [row["name"] for row in inputs.reference_rows]
        self.timbre_map, self.background, self.background_labels, fitted = map_for_walk(
            bundle, self.reference_vectors, names, config.map_fit_steps, config.seed
        )
        self.reference_xy = vectors_to_map(self.timbre_map, self.reference_vectors)
        waypoints = walk_waypoints(self.reference_xy)
        positions = walk_positions(waypoints, n_blocks(pipeline, self.walk_structure))
        self.walk_vectors = map_to_vectors(self.timbre_map, positions)
        manual = np.random.default_rng([config.seed, 1]).uniform(
            -MANUAL_RANGE, MANUAL_RANGE, bundle.timbre_dim
        )
        self.manual_vector = [round(float(v), 2) for v in manual]

        parameters = pipeline.parameters()
        hop_ms = 1000.0 * pipeline.block_size / rate
        codec_ms = 1000.0 * pipeline.latency_samples / rate
        self.result = ModeResult(
            mode=self.mode,
            model_name=bundle.name,
            model_source=str(bundle.source) if bundle.source else None,
            sample_rate=rate,
            settings={
                "steps": parameters["steps"],
                "guidance_timbre": parameters["guidance_timbre"],
                "guidance_structure": parameters["guidance_structure"],
                "seed": config.seed,
                "chunk": pipeline.chunk,
                "block_samples": pipeline.block_size,
            },
            block_ms=hop_ms,
            codec_latency_ms=codec_ms,
            latency_ms=hop_ms + codec_ms,
            map_fitted=fitted,
            walk_waypoints=waypoints.tolist(),
            walk_positions=positions.tolist(),
            walk_vectors=self.walk_vectors.tolist(),
        )
        self.jobs: list[Job] = []
        for k, phrase in enumerate(phrases):
            for r, name in enumerate(names):
                self.jobs.append(
                    Job("reference", f"{phrase.name}-{slug(name)}", f"{phrase.name} as {name}", k, r)
                )
        self.jobs.append(Job("vector", f"{phrases[0].name}-manual", f"{phrases[0].name}, timbre by hand", 0))
        self.jobs.append(Job("walk", "walk", "all phrases, timbre walking across the map", None))
        self._block_seconds: list[float] = []
        self._generated_s = 0.0

    def run(self, job: Job, out: Path) -> ItemResult:
        """Generate ``job``, write its audio and figure, record the timings."""
        pipeline, inputs = self.pipeline, self.inputs
        timbres = None
        reference_file = None
        if job.kind == "reference":
            pipeline.set_timbre_vector(self.reference_vectors[job.reference])
            reference_file = inputs.reference_rows[job.reference]["audio"]
            timbre = inputs.reference_rows[job.reference]["name"]
        elif job.kind == "vector":
            pipeline.set_timbre_vector(self.manual_vector)
            timbre = "vector " + ", ".join(f"{v:g}" for v in self.manual_vector)
        else:
            timbres = self.walk_vectors
            timbre = f"map walk over {len(timbres)} positions"
        if job.phrase is None:
            structure, length = self.walk_structure, self.length * len(self.structures)
            structure_name = ", ".join(p.name for p in inputs.phrases)
            structure_file = inputs.walk_audio if self.mode == "audio" else inputs.walk_midi
        else:
            structure, length = self.structures[job.phrase], self.length
            structure_name = inputs.phrases[job.phrase].name
            structure_file = inputs.phrase_rows[job.phrase]["audio" if self.mode == "audio" else "midi"]
        audio, seconds = stream_blocks(pipeline, structure, timbres)
        self._block_seconds += seconds
        self._generated_s += audio.shape[1] / self.rate
        output = audio[0, :length]
        relative = f"{self.mode}/{job.key}.{self.config.audio_format}"
        gain = _write_output(out, relative, output, self.rate, f"{self.mode}: {job.title}")
        figure = f"img/{self.mode}-{job.key}.png"
        self._draw(out / figure, job, structure, output * gain, length)
        item = ItemResult(
            mode=self.mode,
            kind=job.kind,
            title=job.title,
            structure=structure_name,
            timbre=timbre,
            output=relative,
            figure=figure,
            structure_file=structure_file,
            reference_file=reference_file,
            seconds=length / self.rate,
            compute_s=float(sum(seconds)),
            real_time_factor=float(sum(seconds)) / (audio.shape[1] / self.rate),
            worst_block_ms=1000.0 * max(seconds),
            gain=gain,
            timbre_vector=list(self.manual_vector) if job.kind == "vector" else None,
        )
        self.result.items.append(item)
        return item

    def _draw(self, path: Path, job: Job, structure: np.ndarray, output: np.ndarray, length: int) -> None:
        from after.eval.spectrogram import Panel, draw_panels, log_mel

        seconds = length / self.rate
        if self.mode == "audio":
            first = Panel("structure (audio)", "spectrogram", log_mel(structure[:length], self.rate))
        else:
            frames = round(seconds * self.rate / self.pipeline.hop_length)
            first = Panel("structure (MIDI)", "roll", structure[0, :, :frames], seconds)
        if job.kind == "reference":
            name = self.inputs.reference_rows[job.reference]["name"]
            second = Panel(
                f"timbre: {name}", "spectrogram", log_mel(self.references[job.reference], self.rate)
            )
        elif job.kind == "vector":
            second = Panel("timbre: vector by hand", "vector", self.manual_vector)
        else:
            second = Panel("timbre: walk (vector per block)", "vectors", self.walk_vectors.T, seconds)
        third = Panel("output", "spectrogram", log_mel(output, self.rate))
        draw_panels([first, second, third], path)

    def finish(self, out: Path) -> ModeResult:
        """Totals over the items, the map figure; returns the mode's result."""
        from after.runtime.demo_page import draw_walk_map

        result = self.result
        result.real_time_factor = sum(self._block_seconds) / max(self._generated_s, 1e-9)
        result.worst_block_ms = 1000.0 * max(self._block_seconds, default=0.0)
        result.map_figure = f"img/{self.mode}-timbre-map.png"
        names = [row["name"] for row in self.inputs.reference_rows]
        draw_walk_map(
            out / result.map_figure,
            self.timbre_map,
            self.background,
            self.background_labels,
            self.reference_xy,
            names,
            np.asarray(result.walk_waypoints),
            np.asarray(result.walk_positions),
        )
        return result


def _write_output(out_dir: Path, relative: str, audio: np.ndarray, rate: int, title: str) -> float:
    """Save ``audio [T]``, scaled down when its peak passes :data:`OUTPUT_PEAK`; returns the gain."""
    from after.data.audio import is_silent, save_audio

    if not np.isfinite(audio).all():
        raise AfterError(f"{title}: the model produced NaN or infinite samples")
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    gain = OUTPUT_PEAK / peak if peak > OUTPUT_PEAK else 1.0
    if is_silent(audio):
        log.warning("%s: the output is silent", title)
    save_audio(out_dir / relative, (audio * gain).astype(np.float32), rate)
    return gain
