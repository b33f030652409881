"""Speed of the streaming generation chain on this CPU: per component, per setting, real-time factor.

For each mode (audio or MIDI structure), chunk size (latent frames per block), precision (fp32, or
int8 weights from :mod:`after.nn.quantize`), thread count and number of sampling steps, the bench
times what a streaming host runs for one block (:class:`after.runtime.engine.TransferEngine`, the
engine of the Python pipelines and of the nn~ export):

* ``encode_ms``: codec encoder on the block's structure audio (audio mode);
* ``structure_ms``: structure encoder (audio latents, or the piano roll in MIDI mode);
* ``timbre_ms``: one refresh of the timbre vector from a ``timbre_window``-frame latent window (a live
  timbre is refreshed every ``timbre_every`` frames, not every block; a file timbre never);
* ``step_ms``: one denoiser call on the guidance batch (3 rows) for the block, warm KV cache, AdaLN
  vectors served from the per-step cache;
* ``diffuse_ms``: all sampling steps of the block (``steps`` x the guided step + Euler updates);
* ``decode_ms``: codec decoder;
* ``call_ms``: the whole call ``decode(diffuse(structure(block), c))`` with a fixed timbre vector;
  ``rtf = call_ms / block duration``; ``latency_ms`` = block duration + the chain's algorithmic
  latency (the codec filter bank; structure encoder and denoiser are causal at the block scale).

Timings are medians of ``repeats`` calls after ``warmup`` calls (and after the KV caches are full).
``backend="script"`` runs the TorchScript-compiled engine (what nn~ runs), ``"eager"`` the Python one.
Models: a named preset with random weights (``base``: codec base + diffusion base / midi, ``tiny``:
codec tiny + diffusion tiny / tiny_midi; the denoiser's chunk K is set to each chunk size, so every
chunk can be measured without training), or a trained model through
:func:`after.runtime.bundle.load_bundle` (only chunks that are multiples of its K).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from after.errors import BadInputError
from after.runtime.engine import quantize_engine

__all__ = ["BenchOptions", "export_size_mb", "int8_quality", "quantize_engine", "run_bench"]

log = logging.getLogger(__name__)

PRESET_PARTS: dict[str, tuple[str, dict[str, str]]] = {
    "base": ("base", {"audio": "base", "midi": "midi"}),
    "tiny": ("tiny", {"audio": "tiny", "midi": "tiny_midi"}),
}
"""Bench preset -> (codec preset, diffusion preset per mode)."""

GUIDANCE = (1.5, 1.2)
"""(timbre, structure) guidance scales of the measured calls: all three guidance branches are used."""


@dataclass(frozen=True)
class BenchOptions:
    """What to measure (see the module docstring); ``quick`` is a small subset for smoke tests."""

    preset: str = "base"
    model: str | None = None
    threads: tuple[int, ...] = (1, 2)
    steps: tuple[int, ...] = (1, 2, 4, 8, 16)
    chunks: tuple[int, ...] = (1, 2, 4)
    modes: tuple[str, ...] = ("audio", "midi")
    precisions: tuple[str, ...] = ("fp32",)
    backend: str = "script"
    repeats: int = 7
    warmup: int = 3
    export_size: bool = True
    quality_steps: int = 8

    def __post_init__(self) -> None:
        if self.model is None and self.preset not in PRESET_PARTS:
            raise BadInputError(f"preset {self.preset!r}: expected one of {', '.join(PRESET_PARTS)}")
        for name, values in (("threads", self.threads), ("steps", self.steps), ("chunks", self.chunks)):
            if not values or any(int(v) < 1 for v in values):
                raise BadInputError(f"--{name} {','.join(map(str, values))}: expected integers >= 1")
        bad_modes = [m for m in self.modes if m not in ("audio", "midi")]
        if bad_modes or not self.modes:
            raise BadInputError(f"--modes {','.join(self.modes)}: expected audio and/or midi")
        if any(p not in ("fp32", "int8") for p in self.precisions):
            raise BadInputError(f"precisions {self.precisions}: expected fp32 and/or int8")
        if self.backend not in ("script", "eager"):
            raise BadInputError(f"backend {self.backend!r}: expected script or eager")
        if self.repeats < 1 or self.warmup < 0:
            raise BadInputError("repeats must be >= 1 and warmup >= 0")

    @classmethod
    def quick(cls, **overrides: Any) -> BenchOptions:
        """A subset that runs in seconds on the tiny preset (used by the tests)."""
        settings: dict[str, Any] = dict(
            preset="tiny", threads=(1,), steps=(1, 2), chunks=(1,), repeats=3, warmup=2, export_size=False
        )
        settings.update(overrides)
        return cls(**settings)


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)``; anything else raises :class:`BadInputError` naming ``what``."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise BadInputError(f"--{what} {text!r}: expected comma-separated integers, e.g. 1,2,4") from None
    if not values:
        raise BadInputError(f"--{what} {text!r}: expected at least one value")
    return values


def machine_info() -> dict[str, Any]:
    """CPU model, core count, torch version and thread settings of this process."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "default_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def median_ms(fn: Callable[[], Any], repeats: int, warmup: int) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def preset_bundle(preset: str, mode: str, chunk: int, seed: int = 0) -> Any:
    """Random-weight bundle of a bench preset for ``mode`` with the denoiser's chunk K = ``chunk``."""
    from after.codec.config import codec_preset
    from after.diffusion.config import diffusion_preset
    from after.runtime.bundle import random_bundle

    codec_name, diffusion_names = PRESET_PARTS[preset]
    config = diffusion_preset(diffusion_names[mode])
    config = dataclasses.replace(config, denoiser=dataclasses.replace(config.denoiser, chunk_size=chunk))
    return random_bundle(codec_preset(codec_name), config, seed=seed, name=f"{preset}-{mode}")


@dataclass
class _Chain:
    """The engine (eager or scripted) and the inputs of one block."""

    engine: Any
    mode: str
    audio: torch.Tensor  # [1, 1, chunk * hop]
    roll: torch.Tensor  # [1, 2, 128, chunk]
    timbre: torch.Tensor  # [1, ZT]
    window: torch.Tensor  # [1, D, timbre_window]

    def structure(self) -> torch.Tensor:
        if self.mode == "audio":
            return self.engine.structure_from_audio(self.audio)
        return self.engine.structure_from_roll(self.roll)

    def call(self) -> torch.Tensor:
        return self.engine.decode(self.engine.diffuse(self.structure(), self.timbre))


def _make_chain(bundle: Any, chunk: int, precision: str, backend: str, seed: int = 0) -> tuple[_Chain, Any]:
    """A started engine for ``bundle`` (int8 and scripted if asked) and block inputs; also returns the
    eager engine."""
    from after.runtime.engine import TransferEngine

    engine = TransferEngine(bundle, seed=seed)
    if precision == "int8":
        quantize_engine(engine)
    engine.guidance_timbre, engine.guidance_structure = GUIDANCE
    engine.start(1)
    runner = torch.jit.script(engine) if backend == "script" else engine
    generator = torch.Generator().manual_seed(seed)
    hop = engine.hop
    audio = 0.3 * torch.randn(1, 1, chunk * hop, generator=generator)
    roll = (torch.rand(1, 2, 128, chunk, generator=generator) > 0.97).float()
    timbre = 2.0 * torch.rand(1, engine.timbre_dim, generator=generator) - 1.0
    window = torch.randn(1, engine.latent_dim, engine.timbre_window, generator=generator)
    return _Chain(runner, bundle.mode, audio, roll, timbre, window), engine


def latency_samples(engine: Any, mode: str) -> int:
    """Algorithmic latency of the chain beyond one block, in samples (as the pipelines report it)."""
    codec = engine.codec
    structure = int(getattr(engine.model.structure_encoder, "latency", 0))
    if mode == "audio":
        return int(codec.encoder_latency + codec.decoder_latency + structure * engine.hop)
    return int(codec.decoder_latency)


def bench_chain(bundle: Any, chunk: int, precision: str, options: BenchOptions) -> list[dict[str, Any]]:
    """Records (one per thread count and steps value) for one model, chunk and precision."""
    chain, eager = _make_chain(bundle, chunk, precision, options.backend)
    records = []
    for threads in options.threads:
        log.info("bench %s chunk %d %s, %d thread(s)", bundle.mode, chunk, precision, threads)
        torch.set_num_threads(threads)
        records += _bench_threads(chain, eager, bundle, chunk, precision, options, threads)
    return records


def _bench_threads(
    chain: _Chain, eager: Any, bundle: Any, chunk: int, precision: str, options: BenchOptions, threads: int
) -> list[dict[str, Any]]:
    engine, reps, warm = chain.engine, options.repeats, options.warmup
    sample_rate, hop = bundle.sample_rate, bundle.hop
    block_ms = 1000.0 * chunk * hop / sample_rate
    lat_samples = latency_samples(eager, bundle.mode)
    fill = eager.model.denoiser.window // chunk + 1  # calls that fill every KV cache window
    base: dict[str, Any] = {
        "mode": bundle.mode,
        "preset": options.model or options.preset,
        "precision": precision,
        "backend": options.backend,
        "chunk": chunk,
        "threads": threads,
        "block_ms": block_ms,
        "latency_samples": lat_samples,
        "latency_ms": block_ms + 1000.0 * lat_samples / sample_rate,
        "latency_frames": chunk + lat_samples / hop,
    }
    records = []
    with torch.inference_mode():
        z = engine.codec.encode(chain.audio)
        base["encode_ms"] = (
            median_ms(lambda: engine.codec.encode(chain.audio), reps, warm) if chain.mode == "audio" else 0.0
        )
        source = z if chain.mode == "audio" else chain.roll
        base["structure_ms"] = median_ms(lambda: engine.model.encode_structure(source), reps, warm)
        base["timbre_ms"] = median_ms(lambda: engine.timbre_of_reference(chain.window), max(1, reps // 2), 1)
        base["decode_ms"] = median_ms(lambda: engine.decode(z[:, :, :chunk]), reps, warm)
        for steps in options.steps:
            engine.set_steps(steps)
            for _ in range(fill):
                chain.call()
            record = dict(base, steps=steps)
            record["call_ms"] = median_ms(chain.call, reps, warm)
            record["diffuse_ms"] = median_ms(
                lambda: engine.diffuse(chain.structure(), chain.timbre), max(3, reps // 2), 1
            )
            record["rtf"] = record["call_ms"] / block_ms
            records.append(record)
        denoiser = engine.model.denoiser
        rows = 3
        x = torch.randn(rows, bundle.latent_dim, chunk)
        t = torch.full([rows], 0.5)
        c = chain.timbre.expand(rows, -1).contiguous()
        s = torch.randn(rows, bundle.structure_dim, chunk)
        step_ms = median_ms(lambda: denoiser(x, t, c, s, 0), reps, warm + fill)
    for record in records:
        record["step_ms"] = step_ms
        record["peak_rss_mb"] = peak_rss_mb()
    return records


def relative_error(reference: torch.Tensor, other: torch.Tensor) -> float:
    """``||other - reference|| / ||reference||`` (0 when both are zero)."""
    norm = float(reference.norm())
    return float((other - reference).norm()) / norm if norm > 0 else float((other - reference).norm())


def int8_quality(bundle: Any, chunk: int, steps: int, blocks: int = 6) -> dict[str, float]:
    """Relative L2 errors of int8 weights against fp32 on identical inputs (fresh streams, eager):
    codec encode / decode, one velocity prediction (guidance batch), generated latents and audio of
    ``blocks`` streamed blocks with ``steps`` guided steps."""
    chains = [_make_chain(bundle, chunk, precision, "eager")[0] for precision in ("fp32", "int8")]
    errors: dict[str, list[float]] = {k: [] for k in ("encode", "decode", "velocity", "latents", "audio")}
    generator = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        for chain in chains:
            chain.engine.set_steps(steps)
        x = torch.randn(3, bundle.latent_dim, chunk, generator=generator)
        t = torch.full([3], 0.5)
        c = chains[0].timbre.expand(3, -1).contiguous()
        s = torch.randn(3, bundle.structure_dim, chunk, generator=generator)
        velocity = [ch.engine.model.denoiser.condition(t, c) for ch in chains]
        velocity = [ch.engine.model.denoiser.forward_conditioned(x, v, s) for ch, v in zip(chains, velocity)]
        errors["velocity"].append(relative_error(velocity[0], velocity[1]))
        for _ in range(blocks):
            audio = 0.3 * torch.randn(1, 1, chunk * bundle.hop, generator=generator)
            roll = (torch.rand(1, 2, 128, chunk, generator=generator) > 0.97).float()
            outs = []
            for chain in chains:
                chain.audio, chain.roll = audio, roll
                latents = chain.engine.diffuse(chain.structure(), chain.timbre)
                outs.append((chain.engine.codec.decode(latents), latents))
            errors["latents"].append(relative_error(outs[0][1], outs[1][1]))
            errors["audio"].append(relative_error(outs[0][0], outs[1][0]))
        for chain in chains:
            chain.engine.stop()
        clip = 0.3 * torch.randn(1, 1, 8 * bundle.hop, generator=generator)
        z = [ch.engine.codec.encode(clip) for ch in chains]
        errors["encode"].append(relative_error(z[0], z[1]))
        decoded = [ch.engine.codec.decode(z[0]) for ch in chains]
        errors["decode"].append(relative_error(decoded[0], decoded[1]))
    return {f"rel_error_{k}": statistics.fmean(v) for k, v in errors.items()}


def export_size_mb(bundle: Any, chunk: int, precision: str = "fp32") -> float | None:
    """Size in MB of the nn~ TorchScript file of ``bundle`` (None when the export is unavailable)."""
    try:
        from after.export.model_export import ExportedAfter
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.ts"
        try:
            ExportedAfter(bundle, chunk=chunk, int8=precision == "int8").export(path)
        except Exception as error:  # the export is optional here: report, do not fail the bench
            log.warning("export of %s failed: %s", bundle.name, error)
            return None
        return path.stat().st_size / 1e6


def _bundles(options: BenchOptions, mode: str, chunk: int, loaded: Any) -> Any:
    if loaded is None:
        return preset_bundle(options.preset, mode, chunk)
    if loaded.mode != mode or chunk % loaded.chunk_size:
        return None
    return loaded


def run_bench(options: BenchOptions) -> dict[str, Any]:
    """Measure every configuration of ``options``: ``{"machine", "records", "memory"}``."""
    loaded = None
    if options.model is not None:
        from after.runtime.bundle import load_bundle

        loaded = load_bundle(options.model)
    threads_before = torch.get_num_threads()
    machine = machine_info()
    records: list[dict[str, Any]] = []
    export_sizes: dict[str, float | None] = {}
    try:
        for mode in options.modes:
            for chunk in options.chunks:
                bundle = _bundles(options, mode, chunk, loaded)
                if bundle is None:
                    log.info("skipping %s chunk %d: not offered by model %s", mode, chunk, options.model)
                    continue
                for precision in options.precisions:
                    quality: dict[str, float] = {}
                    if precision == "int8":
                        torch.set_num_threads(1)
                        quality = int8_quality(bundle, chunk, options.quality_steps)
                    key = f"{mode}/{precision}"
                    if options.export_size and key not in export_sizes:
                        export_sizes[key] = export_size_mb(bundle, chunk, precision)
                    for record in bench_chain(bundle, chunk, precision, options):
                        record.update(quality)
                        record["ts_mb"] = export_sizes.get(key)
                        record.update({k: machine[k] for k in ("cpu", "cores", "torch")})
                        records.append(record)
    finally:
        torch.set_num_threads(threads_before)
    return {
        "machine": machine,
        "records": records,
        "memory": {"peak_rss_mb": peak_rss_mb(), "ts_mb": export_sizes},
    }
