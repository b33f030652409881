"""MODEL_CARD.md for a model: what it is, what it was trained on, how it scores, how fast it runs.

:func:`model_card_markdown` builds the card from plain dicts, so every part can be filled (and
tested) separately:

* ``model``: :func:`model_facts` of a loaded :class:`~after.runtime.bundle.ModelBundle` (sizes,
  rates, default sampling settings, parameter counts);
* ``training``: :func:`training_facts` (data, preset, steps, training time, hardware), read from the
  diffusion run folder when the model is one or when it is given, and from an optional
  ``training.json`` next to the model (keys ``data``, ``preset``, ``steps``, ``training_time_s``,
  ``hardware``, ``notes``); anything not found is written as ``unknown``;
* ``evaluation``: a :func:`after.eval.protocol.run_protocol` result (checks and overall table);
* ``speed``: :func:`measure_speed` (one streaming configuration measured with
  :mod:`after.eval.bench`: real-time factor per block and latency);
* ``limits``: extra known limits, added to the ones read from the evaluation (failed checks).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
TRAINING_FILE = "training.json"
GENERAL_LIMITS = (
    "Trained on FluidSynth renders of General MIDI soundfonts (FluidR3_GM, TimGM6mb): recorded "
    "instruments, voices and mixes are outside its training data.",
    "The evaluation renders held-out MIDI with the same kind of synthesis; its numbers say little "
    "about real recordings.",
    "FD-MFCC is a Fréchet distance on MFCC frames, not FAD: never compare it with published FAD figures.",
    "Timbre is summarised in a handful of numbers per clip: a reference that changes instrument "
    "midway is averaged.",
)


def model_facts(bundle: Any) -> dict[str, Any]:
    """JSON-ready description of a :class:`~after.runtime.bundle.ModelBundle`."""
    from after.runtime.pipeline import build_pipeline

    pipeline = build_pipeline(bundle)
    settings = pipeline.parameters()
    return {
        "name": bundle.name,
        "mode": bundle.mode,
        "source": str(bundle.source) if bundle.source else None,
        "sample_rate": bundle.sample_rate,
        "hop": bundle.hop,
        "frame_rate_hz": bundle.sample_rate / bundle.hop,
        "latent_dim": bundle.latent_dim,
        "timbre_dim": bundle.timbre_dim,
        "structure_dim": bundle.structure_dim,
        "chunk_frames": bundle.chunk_size,
        "latency_ms": 1000.0 * pipeline.latency_samples / bundle.sample_rate,
        "steps": settings["steps"],
        "guidance_timbre": settings["guidance_timbre"],
        "guidance_structure": settings["guidance_structure"],
        "codec_parameters": sum(p.numel() for p in bundle.codec.parameters()),
        "diffusion_parameters": sum(p.numel() for p in bundle.model.parameters()),
        "timbre_map": bundle.timbre_map is not None,
    }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        log.warning("%s: not read (%s)", path, error)
        return {}
    return data if isinstance(data, dict) else {}


def _run_facts(run_dir: Path) -> dict[str, Any]:
    """What a diffusion run folder tells: preset, data, codec, steps, span of the run."""
    from after.train.run import RunFolder, checkpoint_step

    run = RunFolder(run_dir)
    if not run.config_path.is_file():
        return {}
    config = _read_json(run.config_path)
    facts: dict[str, Any] = {"run": str(run_dir), "preset": config.get("preset", UNKNOWN)}
    if isinstance(config.get("data"), dict):
        facts["data"] = dict(config["data"])
        dataset = config["data"].get("path")
        if dataset and Path(dataset).exists():
            try:
                from after.data.summary import describe_dataset

                described = describe_dataset(dataset)
                facts["data"].update(
                    {k: described[k] for k in ("hours", "files", "families", "sample_rate") if k in described}
                )
            except Exception as error:  # the card is still useful without the dataset's summary
                log.warning("dataset %s not described: %s", dataset, error)
    if isinstance(config.get("codec"), dict):
        facts["codec"] = config["codec"]
    training = config.get("training") if isinstance(config.get("training"), dict) else {}
    facts["batch_size"] = training.get("batch_size", UNKNOWN)
    latest = run.latest_checkpoint()
    if latest is not None:
        facts["steps"] = checkpoint_step(latest)
        span = latest.stat().st_mtime - run.config_path.stat().st_mtime
        facts["training_time_s"] = max(span, 0.0)
        facts["training_time_note"] = "from the run's start to its last checkpoint (pauses included)"
    return facts


def training_facts(bundle: Any = None, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Training facts of a model: from ``run_dir`` (or the bundle's source when it is a run folder)
    and from a ``training.json`` beside the model or in the run; missing facts are ``unknown``."""
    facts: dict[str, Any] = {}
    folders = []
    source = Path(bundle.source) if bundle is not None and bundle.source is not None else None
    if source is not None:
        folder = source if source.is_dir() else source.parent
        folders.append(folder)
        if source.suffix == ".ckpt":  # RUN/checkpoints/stepN.ckpt
            folders.append(source.parent.parent)
    if run_dir is not None:
        folders.append(Path(run_dir))
    for folder in folders:
        facts.update(_run_facts(folder))
    for folder in folders:
        if (folder / TRAINING_FILE).is_file():
            facts.update(_read_json(folder / TRAINING_FILE))
    for key in ("data", "preset", "steps", "training_time_s", "hardware"):
        facts.setdefault(key, UNKNOWN)
    return facts


def measure_speed(
    bundle: Any, steps: int | None = None, threads: int = 1, repeats: int = 5
) -> dict[str, Any]:
    """One streaming configuration of ``bundle`` (its chunk, ``steps`` or its default, TorchScript)
    timed with :func:`after.eval.bench.bench_chain`: the bench record plus the machine."""
    import torch

    from after.eval.bench import BenchOptions, bench_chain, machine_info

    steps = steps if steps is not None else int(bundle.diffusion_config.n_steps)
    options = BenchOptions(
        model=bundle.name, threads=(threads,), steps=(steps,), chunks=(bundle.chunk_size,),
        modes=(bundle.mode,), repeats=repeats, warmup=2, export_size=False,
    )  # fmt: skip
    before = torch.get_num_threads()
    try:
        record = bench_chain(bundle, bundle.chunk_size, "fp32", options)[0]
    finally:
        torch.set_num_threads(before)
    return {"record": record, "machine": machine_info()}


def _value(value: Any, unit: str = "") -> str:
    if value is None or value == UNKNOWN:
        return UNKNOWN
    if isinstance(value, float):
        return f"{value:.3g}{unit}"
    return f"{value}{unit}"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return UNKNOWN
    hours = seconds / 3600.0
    return f"{hours:.1f} h" if hours >= 1 else f"{seconds / 60.0:.1f} min"


def _data_lines(data: Any) -> list[str]:
    if not isinstance(data, Mapping):
        return [f"- Dataset: {_value(data)}"]
    lines = [
        f"- {key.replace('_', ' ').capitalize()}: {_value(value)}"
        for key, value in data.items()
        if key != "families"
    ]
    families = data.get("families")
    if isinstance(families, Mapping) and families:
        lines.append("- Families (chunks): " + ", ".join(f"{k} {v}" for k, v in sorted(families.items())))
    return lines


def _evaluation_lines(evaluation: Mapping[str, Any] | None) -> list[str]:
    if not evaluation:
        return ["Not evaluated yet (`after eval --model ... --model-card ...`)."]
    from after.eval.protocol_report import checks_of, checks_table, overall_table

    options = evaluation["options"]
    return [
        f"{options['cases']} held-out triplets, seed {options['seed']}, {len(evaluation['families'])} target "
        f"families; means with 95 % bootstrap intervals. Protocol: `after eval`.",
        *(f"Notice: {n}" for n in evaluation.get("notices", [])),
        "",
        checks_table(checks_of(evaluation)),
        overall_table(evaluation),
    ]


def _speed_lines(speed: Mapping[str, Any] | None, evaluation: Mapping[str, Any] | None) -> list[str]:
    lines = []
    if speed:
        r, machine = speed["record"], speed.get("machine", {})
        lines += [
            f"Streaming, {r['backend']} engine, {r['threads']} thread(s), chunk {r['chunk']} frame(s) "
            f"({r['block_ms']:.1f} ms blocks), {r['steps']} sampling steps, "
            f"on {machine.get('cpu', UNKNOWN)}:",
            "",
            f"- Real-time factor: {r['rtf']:.3f} "
            "(compute time per block / block duration; below 1 is real time)",
            f"- Time per block: {r['call_ms']:.1f} ms",
            f"- Latency: {r['latency_ms']:.1f} ms "
            f"(one block plus {r['latency_samples']} samples of algorithmic latency)",
        ]
    else:
        lines.append("Streaming speed: not measured.")
    offline = (evaluation or {}).get("speed", {})
    for name, entry in offline.items():
        lines.append(f"- Offline {name}: {entry['rtf']:.3f} s of compute per s of audio")
    return lines


def known_limits(evaluation: Mapping[str, Any] | None, extra: Sequence[str] = ()) -> list[str]:
    """General limits, the failed or unmeasured checks of ``evaluation`` and ``extra``."""
    limits = list(GENERAL_LIMITS)
    for check in (evaluation or {}).get("checks", []):
        if check["status"] == "fail":
            limits.append(f"Fails the check {check['name']} ({check['system']}): {check['detail']}.")
        elif check["status"] == "n/a":
            limits.append(f"Check {check['name']} ({check['system']}) not established: {check['detail']}.")
    for notice in (evaluation or {}).get("notices", []):
        limits.append(notice[0].upper() + notice[1:] + ".")
    return limits + list(extra)


def model_card_markdown(
    model: Mapping[str, Any],
    training: Mapping[str, Any] | None = None,
    evaluation: Mapping[str, Any] | None = None,
    speed: Mapping[str, Any] | None = None,
    limits: Sequence[str] = (),
) -> str:
    """The card as markdown (sections: model, presets, training data, training, evaluation, speed,
    known limits); see the module doc for the inputs."""
    training = dict(training or {})
    structure = "audio (any recording)" if model["mode"] == "audio" else "MIDI (notes and velocities)"
    lines = [
        f"# Model card: {model['name']}",
        "",
        "## Model",
        "",
        f"- Structure input: {structure}; timbre input: a reference recording "
        f"or {model['timbre_dim']} values",
        f"- Sample rate {model['sample_rate']} Hz, {model['hop']} samples per latent frame "
        f"({model['frame_rate_hz']:.2f} Hz), latent {model['latent_dim']}, "
        f"structure code {model['structure_dim']}",
        f"- Parameters: codec {model['codec_parameters']:,}, diffusion {model['diffusion_parameters']:,}",
        f"- 2-D timbre map: {'yes' if model.get('timbre_map') else 'no'}",
        f"- Source: {model.get('source') or 'built in memory'}",
        "",
        "## Presets",
        "",
        f"- Sampling: {model['steps']} steps, timbre guidance {model['guidance_timbre']:g}, "
        f"structure guidance {model['guidance_structure']:g}",
        f"- Streaming chunk: {model['chunk_frames']} latent frame(s); "
        f"algorithmic latency {model['latency_ms']:.1f} ms",
        f"- Training preset: {_value(training.get('preset'))}",
        "",
        "## Training data",
        "",
        *_data_lines(training.get("data", UNKNOWN)),
        "",
        "## Training",
        "",
        f"- Steps: {_value(training.get('steps'))}",
        f"- Batch size: {_value(training.get('batch_size'))}",
        f"- Training time: {_duration(training.get('training_time_s'))}"
        + (f" ({training['training_time_note']})" if training.get("training_time_note") else ""),
        f"- Hardware: {_value(training.get('hardware'))}",
    ]
    if training.get("notes"):
        lines.append(f"- Notes: {training['notes']}")
    lines += ["", "## Evaluation", "", *_evaluation_lines(evaluation), "", "## Speed", ""]
    lines += _speed_lines(speed, evaluation)
    lines += ["", "## Known limits", "", *(f"- {limit}" for limit in known_limits(evaluation, limits)), ""]
    return "\n".join(lines)


def write_model_card(path: str | Path, model: Mapping[str, Any], **parts: Any) -> Path:
    """Write :func:`model_card_markdown` to ``path`` (``parts``: training, evaluation, speed, limits)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model_card_markdown(model, **parts), encoding="utf-8")
    log.info("wrote %s", path)
    return path
