"""What ``after info`` reports about a dataset, read from its meta and file index only (no audio)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

from after.data.records import open_dataset


def describe_dataset(path: str | Path) -> dict[str, Any]:
    """A JSON-ready summary of the dataset at ``path``.

    Keys: ``path``, ``format_version``, ``sample_rate``, ``chunk_seconds``, ``chunk_samples``,
    ``chunks``, ``hours`` and ``seconds`` (chunks × chunk length, padding included),
    ``audio_seconds`` (without the zero padding of last chunks), ``files`` (used), ``families`` and
    ``programs`` (chunk counts by instrument family / program name; ``"unknown"`` when not known),
    ``skipped`` (list of ``{"path", "reason"}``), ``skipped_reasons`` (count per reason),
    ``latents`` (codec id -> hop, latent_dim, sample_rate; empty until ``after encode`` ran).
    """
    with open_dataset(path) as store:
        meta = store.meta
        files = store.files()
        n_chunks = len(store.chunk_keys())
    families: Counter[str] = Counter()
    programs: Counter[str] = Counter()
    audio_seconds = 0.0
    skipped = []
    for entry in files.values():
        if entry.status != "done":
            skipped.append({"path": entry.path, "reason": entry.reason})
            continue
        count = len(entry.chunk_keys)
        families[str(entry.info.get("family", "unknown"))] += count
        programs[str(entry.info.get("program_name", "unknown"))] += count
        audio_seconds += float(entry.info.get("audio_seconds", 0.0))
    seconds = n_chunks * meta.chunk_seconds
    return {
        "path": str(path),
        "format_version": meta.format_version,
        "sample_rate": meta.sample_rate,
        "chunk_seconds": meta.chunk_seconds,
        "chunk_samples": meta.chunk_samples,
        "audio_encoding": meta.audio_encoding,
        "chunks": n_chunks,
        "seconds": seconds,
        "hours": seconds / 3600.0,
        "audio_seconds": audio_seconds,
        "files": sum(entry.status == "done" for entry in files.values()),
        "families": dict(families.most_common()),
        "programs": dict(programs.most_common()),
        "skipped": skipped,
        "skipped_reasons": dict(Counter(item["reason"] for item in skipped).most_common()),
        "latents": {name: dataclasses.asdict(info) for name, info in meta.codecs.items()},
    }


def format_description(description: dict[str, Any]) -> list[str]:
    """Human-readable lines of :func:`describe_dataset`'s result."""
    d = description
    lines = [
        f"dataset {d['path']} (format version {d['format_version']})",
        f"  {d['chunks']} chunks of {d['chunk_seconds']:g} s at {d['sample_rate']} Hz: "
        f"{d['hours']:.3f} h ({d['audio_seconds']:.1f} s of audio without padding) from {d['files']} files",
        "  families: " + (", ".join(f"{name} {count}" for name, count in d["families"].items()) or "none"),
        "  programs: " + (", ".join(f"{name} {count}" for name, count in d["programs"].items()) or "none"),
        "  latents: "
        + (
            ", ".join(f"{name} (dim {c['latent_dim']}, hop {c['hop']})" for name, c in d["latents"].items())
            or "none (add them with `after encode`)"
        ),
        f"  skipped files: {len(d['skipped'])}",
    ]
    lines += [f"    {item['path']}: {item['reason']}" for item in d["skipped"]]
    return lines
