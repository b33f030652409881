"""The whole evaluation protocol for one audio model and/or one MIDI model, and its pass/fail checks.

:func:`run_protocol` draws ``cases`` held-out triplets (seeded; see :mod:`after.eval.triplets`),
renders them with FluidSynth at the first model's sample rate and scores these systems on every
triplet (one row each, see :func:`after.eval.report.score_output`):

* ``audio_to_audio``: the audio model, structure = content render, timbre reference = style render;
* ``midi_to_audio``: the MIDI model, structure = content MIDI, timbre reference = style render;
* ``codec_reconstruction``: the target encoded and decoded by the model's codec (one row per
  distinct codec; a MIDI model with a codec of its own adds ``codec_reconstruction_midi``);
* the trivial rows ``copy_structure``, ``copy_timbre`` and ``ground_truth`` (the F1 ceiling).

Metrics: LSD and MFCC distance to the target, note/onset F1 against the structure MIDI
(basic-pitch transcription, optional), timbre-ID (a classifier trained on separate renders of the
programs, from other pieces, predicting the target's *family*; it reaches about 0.9 on the
ground-truth renders, see ``benchmarks/bench_timbre_id.py``), FD-MFCC per system, a linear leakage
probe on the audio model's structure codes ``s`` and compute seconds per second of audio
(real-time factor of the offline call). Means come with bootstrap intervals, over all triplets
and per family.

The overall means then go through the release checks of :mod:`after.eval.checks`.
:func:`load_models` picks the audio and MIDI models for ``after eval``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from after.data.gm import family_of
from after.errors import BadInputError
from after.eval.checks import (
    AUDIO_SYSTEM,
    CODEC_MIDI_SYSTEM,
    CODEC_SYSTEM,
    MIDI_SYSTEM,
    evaluate_checks,
    overall_means,
    verdict,
)
from after.eval.triplets import DEFAULT_SOUNDFONTS, RenderedTriplet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProtocolOptions:
    """Settings of :func:`run_protocol`.

    Attributes:
        cases: number of triplets (target families cycle, so >= 14 covers every family once).
        seed: seeds the triplets, the timbre-ID training renders, the probe split and the noise.
        clip_s: seconds of notes per triplet (renders are ``clip_s + 1.1`` s long).
        transcription: score note/onset F1 (needs the optional transcription extra).
        soundfonts: soundfonts drawn for the renders.
        timbre_per_program, timbre_clip_s: renders per program (and their length) for timbre-ID.
        steps: sampling steps of the models (None: each model's default).
        n_boot: bootstrap resamples of every interval.
        int8: run the models (and the codec reconstruction row) with int8 weights, as
            ``after transfer --int8`` and the int8 nn~ export do.
        codecs: more codecs (run folder, checkpoint, released model or TorchScript file) whose
            reconstructions of the targets are scored too, one row ``codec:<path>`` each, in fp32:
            to choose between codec checkpoints on the protocol's own triplets before a release.
    """

    cases: int = 40
    seed: int = 0
    clip_s: float = 8.0
    transcription: bool = True
    soundfonts: tuple[str, ...] = DEFAULT_SOUNDFONTS
    timbre_per_program: int = 6
    timbre_clip_s: float = 8.0
    steps: int | None = None
    n_boot: int = 1000
    int8: bool = False
    codecs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.cases, bool) or not isinstance(self.cases, int) or self.cases < 1:
            raise BadInputError(f"cases={self.cases!r}: expected a whole number of triplets >= 1")
        for name in ("clip_s", "timbre_clip_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 1.0):
                raise BadInputError(f"{name}={value!r}: expected at least 1 second")
        if self.timbre_per_program < 1 or self.n_boot < 1:
            raise BadInputError("timbre_per_program and n_boot must be >= 1")
        if self.steps is not None and self.steps < 1:
            raise BadInputError(f"steps={self.steps}: expected >= 1")
        if not self.soundfonts:
            raise BadInputError("soundfonts: expected at least one soundfont file")


def parse_cases(text: str | int) -> int:
    """``--cases`` value -> a whole number >= 1; anything else raises :class:`BadInputError`."""
    try:
        cases = int(str(text).strip())
    except ValueError:
        raise BadInputError(f"--cases {text!r}: expected a whole number of triplets >= 1") from None
    if cases < 1:
        raise BadInputError(f"--cases {cases}: expected a whole number of triplets >= 1")
    return cases


def load_models(model: str | None = None, midi_model: str | None = None) -> tuple[Any, Any]:
    """``(audio_bundle, midi_bundle)`` for ``after eval``; either may be None.

    ``model`` (default: the embedded model) goes to the slot of its mode. ``midi_model`` must be a
    MIDI model. When only ``midi_model`` is given and no embedded model is installed, only the MIDI
    model is evaluated. Raises :class:`~after.errors.ModelFileError` / :class:`BadInputError`.
    """
    from after.errors import ModelFileError
    from after.runtime.bundle import load_bundle

    slots: dict[str, Any] = {"audio": None, "midi": None}
    if midi_model is not None:
        midi = load_bundle(midi_model)
        if midi.mode != "midi":
            raise BadInputError(
                f"--midi-model {midi_model}: {midi.name!r} is an {midi.mode} model, not a MIDI model"
            )
        slots["midi"] = midi
    try:
        bundle = load_bundle(model)
    except ModelFileError as error:
        if model is not None or midi_model is None:
            raise
        log.warning("evaluating the MIDI model only: %s", error)
        return None, slots["midi"]
    if slots[bundle.mode] is not None:
        raise BadInputError(
            f"--model {model or '(embedded)'} is a MIDI model and --midi-model gives another one; "
            "give an audio model with --model"
        )
    slots[bundle.mode] = bundle
    if model is None and midi_model is None and slots["midi"] is None:
        from after.runtime.bundle import DEFAULT_MIDI_MODEL_NAME, models_dir

        if (models_dir() / DEFAULT_MIDI_MODEL_NAME).is_dir():  # the embedded MIDI model, when shipped
            slots["midi"] = load_bundle(DEFAULT_MIDI_MODEL_NAME)
    return slots["audio"], slots["midi"]


# -- systems -----------------------------------------------------------------------------------------


def _fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    flat = np.asarray(audio, dtype=np.float32).reshape(-1)[:length]
    return np.pad(flat, (0, length - flat.size))


def _at_rate(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    from after.data.audio import resample

    return audio if from_rate == to_rate else np.asarray(resample(audio, from_rate, to_rate), np.float32)


def _model_system(
    bundle: Any, steps: int | None, seed: int, int8: bool = False
) -> tuple[Callable[[RenderedTriplet], np.ndarray], Any]:
    """A system running ``bundle`` offline (audio or MIDI structure) and its pipeline."""
    from after.runtime.pipeline import build_pipeline

    pipeline = build_pipeline(bundle, steps=steps, seed=seed, int8=int8)
    rate = bundle.sample_rate

    def system(item: RenderedTriplet) -> np.ndarray:
        pipeline.seed = seed + item.triplet.index  # independent, reproducible noise per triplet
        pipeline.set_timbre_audio(_at_rate(item.style, item.sample_rate, rate))
        if bundle.mode == "audio":
            out = pipeline.transfer(_at_rate(item.content, item.sample_rate, rate))
        else:
            out = pipeline.transfer(
                pipeline.roll_of_notes(item.triplet.content_notes, item.triplet.duration_s)
            )
        return _at_rate(out.reshape(-1), rate, item.sample_rate)

    return system, pipeline


def _codec_system(codec: Any, sample_rate: int, hop: int) -> Callable[[RenderedTriplet], np.ndarray]:
    """The reconstruction of each triplet's target by ``codec`` (working at ``sample_rate`` Hz,
    ``hop`` samples per latent frame), at the triplet's rate."""
    import torch

    from after.runtime.pipeline import offline_mode

    def system(item: RenderedTriplet) -> np.ndarray:
        audio = _at_rate(item.target, item.sample_rate, sample_rate)
        padded = np.pad(audio, (0, (-audio.size) % hop))
        with torch.no_grad(), offline_mode(codec):
            z = codec.encode(torch.from_numpy(padded)[None, None])  # [1, D, L]
            out = codec.decode(z)[0, 0].numpy()  # [1, 1, T] -> [T]
        return _at_rate(out, sample_rate, item.sample_rate)

    return system


def _bundle_codec_system(bundle: Any, int8: bool = False) -> Callable[[RenderedTriplet], np.ndarray]:
    codec = bundle.codec
    if int8:
        from after.nn.quantize import quantize_dynamic_int8
        from after.runtime.engine import TransferEngine

        codec = quantize_dynamic_int8(TransferEngine.plain_codec(bundle))
    return _codec_system(codec, bundle.sample_rate, bundle.hop)


def extra_codec_systems(paths: Sequence[str]) -> dict[str, Callable[[RenderedTriplet], np.ndarray]]:
    """``{"codec:<path>": system}`` for each codec of :attr:`ProtocolOptions.codecs` (fp32, eval mode).
    A path that is not a codec raises :class:`~after.errors.ModelFileError` naming it."""
    from after.codec.load import load_codec

    systems = {}
    for path in paths:
        handle = load_codec(path)
        module = handle.module.float().eval()
        systems[f"codec:{path}"] = _codec_system(module, handle.sample_rate, handle.hop)
    return systems


def _same_weights(a: Any, b: Any) -> bool:
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa
    )


def _systems(audio_bundle: Any, midi_bundle: Any, options: ProtocolOptions) -> tuple[dict, dict]:
    """``{name: callable}`` of the model and codec systems (with :attr:`ProtocolOptions.codecs`),
    and ``{name: latency_ms}`` of the models."""
    systems, latency = {}, {}
    for name, bundle in ((AUDIO_SYSTEM, audio_bundle), (MIDI_SYSTEM, midi_bundle)):
        if bundle is not None:
            systems[name], pipeline = _model_system(bundle, options.steps, options.seed, options.int8)
            latency[name] = 1000.0 * pipeline.latency_samples / bundle.sample_rate
    first = audio_bundle if audio_bundle is not None else midi_bundle
    systems[CODEC_SYSTEM] = _bundle_codec_system(first, options.int8)
    both = audio_bundle is not None and midi_bundle is not None
    if both and not _same_weights(audio_bundle.codec, midi_bundle.codec):
        systems[CODEC_MIDI_SYSTEM] = _bundle_codec_system(midi_bundle, options.int8)
    systems.update(extra_codec_systems(options.codecs))
    return systems, latency


# -- the protocol ------------------------------------------------------------------------------------


def _sources(options: ProtocolOptions) -> tuple[list, list]:
    """Held-out stems split by piece: the triplets' sources and the timbre-ID training sources."""
    from after.eval.triplets import heldout_sources

    n_pieces = max(6, math.ceil(options.cases / 2)) + 4
    sources = heldout_sources(n_pieces, seed=options.seed)
    pieces = sorted({s.key.rsplit(":", 1)[0] for s in sources})
    training_pieces = set(pieces[-max(2, len(pieces) // 4) :])
    own = [s for s in sources if s.key.rsplit(":", 1)[0] not in training_pieces]
    other = [s for s in sources if s.key.rsplit(":", 1)[0] in training_pieces]
    return own, other


def _leakage(bundle: Any, rendered: Sequence[RenderedTriplet], seed: int) -> dict[str, Any]:
    """Linear probe predicting the family of the instrument from the time-pooled structure code ``s``
    of the content, style and target renders (audio model)."""
    import torch

    from after.eval.timbre_id import leakage_probe, pool_over_time
    from after.runtime.pipeline import offline_mode

    features, labels = [], []
    with torch.no_grad(), offline_mode(bundle.codec), offline_mode(bundle.model):
        for item in rendered:
            t = item.triplet
            for audio, program in (
                (item.content, t.content_program),
                (item.style, t.target_program),
                (item.target, t.target_program),
            ):
                x = _at_rate(audio, item.sample_rate, bundle.sample_rate)
                x = np.pad(x, (0, (-x.size) % bundle.hop))
                s = bundle.model.encode_structure(bundle.codec.encode(torch.from_numpy(x)[None, None]))
                features.append(pool_over_time(s.numpy())[0])  # [1, ZS, L] -> [2 ZS]
                labels.append(family_of(program))
    try:
        probe = leakage_probe(np.stack(features), labels, seed=seed)
    except BadInputError as error:
        return {"status": "n/a", "reason": str(error), "label": "family"}
    return {
        "status": "measured",
        "label": "family",
        **dataclasses.asdict(probe),
        "above_chance": probe.above_chance,
    }


def run_protocol(
    audio_bundle: Any = None,
    midi_bundle: Any = None,
    options: ProtocolOptions = ProtocolOptions(),
    progress: bool = False,
) -> dict[str, Any]:
    """Run the protocol (module doc) and return a JSON-ready result with keys ``options``,
    ``models``, ``sample_rate``, ``transcription``, ``notices``, ``families``, ``rows``,
    ``summary`` (dicts of :class:`after.eval.report.Summary`), ``fd_mfcc``, ``speed``,
    ``leakage``, ``checks`` and ``verdict``."""
    from after.data.transcription import INSTALL_HINT, transcription_available
    from after.eval.features import to_eval_rate
    from after.eval.metrics import fd_mfcc
    from after.eval.report import METRICS, score_output, summarise, trivial_outputs
    from after.eval.timbre_id import TimbreIdClassifier
    from after.eval.triplets import build_triplets, make_renderer, render_triplet, timbre_training_set

    if audio_bundle is None and midi_bundle is None:
        raise BadInputError("run_protocol: give an audio model, a MIDI model or both")
    for bundle, mode in ((audio_bundle, "audio"), (midi_bundle, "midi")):
        if bundle is not None and bundle.mode != mode:
            raise BadInputError(f"model {bundle.name!r} is a {bundle.mode} model, given as the {mode} model")
    notices = []
    transcribe = options.transcription and transcription_available()
    if options.transcription and not transcribe:
        notices.append(
            f"note/onset F1 unavailable: the transcription extra is not installed ({INSTALL_HINT})"
        )
    elif not options.transcription:
        notices.append("note/onset F1 unavailable: transcription turned off")
    for notice in notices:
        log.warning("%s", notice)
    rate = (audio_bundle or midi_bundle).sample_rate
    systems, latency = _systems(audio_bundle, midi_bundle, options)  # a bad --codec fails before renders
    own, other = _sources(options)
    triplets = build_triplets(own, options.cases, options.seed, options.soundfonts, clip_s=options.clip_s)
    renderer = make_renderer(options.soundfonts, rate)
    try:
        rendered = [render_triplet(t, renderer) for t in triplets]
        programs = sorted({t.target_program for t in triplets} | {t.content_program for t in triplets})
        clips, labels = timbre_training_set(
            other,
            programs,
            renderer,
            options.soundfonts,
            options.timbre_per_program,
            options.timbre_clip_s,
            options.seed,
        )
    finally:
        renderer.close()
    # discriminant space of the programs; a clip is scored by its family
    classifier = TimbreIdClassifier().fit(clips, labels, rate, groups=[family_of(p) for p in labels])
    compute = {name: 0.0 for name in systems}
    from tqdm import tqdm

    rows, outputs = [], {}
    for item in tqdm(rendered, desc="evaluating", unit="triplet", disable=not progress, leave=False):
        produced = trivial_outputs(item)
        for name, system in systems.items():
            start = time.perf_counter()
            produced[name] = _fit_length(system(item), item.target.size)
            compute[name] += time.perf_counter() - start
        for name, audio in produced.items():
            rows.append(score_output(name, audio, item, transcribe, classifier, timbre_by="family"))
            outputs.setdefault(name, []).append(to_eval_rate(audio, rate))
    summary = summarise(rows, METRICS, n_boot=options.n_boot, seed=options.seed)
    targets = outputs["ground_truth"]
    fd = {}
    for name, clips in outputs.items():
        try:
            fd[name] = fd_mfcc(clips, targets, 16_000)
        except BadInputError as error:
            notices.append(f"FD-MFCC of {name} not measured: {error}")
    audio_s = sum(t.duration_s for t in triplets)
    speed = {
        name: {
            "compute_s": seconds,
            "audio_s": audio_s,
            "rtf": seconds / audio_s,
            "latency_ms": latency.get(name),
        }
        for name, seconds in compute.items()
    }
    families = sorted({t.family for t in triplets})
    summary_dicts = [dataclasses.asdict(s) for s in summary]
    checks = evaluate_checks(overall_means(summary_dicts), len(families))
    leakage = _leakage(audio_bundle, rendered, options.seed) if audio_bundle is not None else None
    return {
        "options": {**dataclasses.asdict(options), "soundfonts": list(options.soundfonts)},
        "models": {
            mode: {
                "name": b.name,
                "source": str(b.source) if b.source else None,
                "sample_rate": b.sample_rate,
            }
            for mode, b in (("audio", audio_bundle), ("midi", midi_bundle))
            if b is not None
        },
        "sample_rate": rate,
        "transcription": transcribe,
        "notices": notices,
        "families": families,
        "rows": rows,
        "summary": summary_dicts,
        "fd_mfcc": fd,
        "speed": speed,
        "leakage": leakage,
        "checks": [dataclasses.asdict(c) for c in checks],
        "verdict": verdict(checks),
    }
