"""MODEL_CARD.md: every section, the numbers it is given, facts read from a run folder."""

from __future__ import annotations

import json
import os

import pytest

from after.codec.config import codec_preset
from after.diffusion.config import diffusion_preset
from after.eval.model_card import (
    UNKNOWN,
    known_limits,
    model_card_markdown,
    model_facts,
    training_facts,
    write_model_card,
)
from after.runtime.bundle import random_bundle

SECTIONS = [
    "## Model",
    "## Presets",
    "## Training data",
    "## Training",
    "## Evaluation",
    "## Speed",
    "## Known limits",
]


@pytest.fixture(scope="module")
def bundle():
    return random_bundle(codec_preset("tiny"), diffusion_preset("tiny"), seed=0, name="card-test")


def model_dict(**changes):
    base = {
        "name": "demo", "mode": "audio", "source": "/models/demo", "sample_rate": 44100, "hop": 2048,
        "frame_rate_hz": 21.533, "latent_dim": 64, "timbre_dim": 8, "structure_dim": 12, "chunk_frames": 4,
        "latency_ms": 23.4, "steps": 6, "guidance_timbre": 1.5, "guidance_structure": 1.25,
        "codec_parameters": 6_200_000, "diffusion_parameters": 31_000_000, "timbre_map": True,
    }  # fmt: skip
    return {**base, **changes}


def evaluation_dict():
    summary = [
        {"system": s, "family": "all", "metric": "lsd", "mean": m, "low": m - 1, "high": m + 1, "n": 40}
        for s, m in (("audio_to_audio", 12.345), ("ground_truth", 0.0), ("copy_structure", 15.5))
    ]
    checks = [
        {"name": "timbre_id", "system": "audio_to_audio", "status": "pass", "value": 0.81, "threshold": 0.7,
         "detail": "accuracy 0.810 over 14 families"},
        {"name": "beats_copies", "system": "audio_to_audio", "status": "fail", "value": 2.0, "threshold": 3.0,
         "detail": "mfcc_distance 0.300 < copy_structure 0.250: no"},
    ]  # fmt: skip
    return {
        "options": {"cases": 40, "seed": 3},
        "families": [f"family{i}" for i in range(14)],
        "transcription": True,
        "notices": [],
        "summary": summary,
        "fd_mfcc": {"audio_to_audio": 321.5},
        "speed": {"audio_to_audio": {"compute_s": 3.0, "audio_s": 360.0, "rtf": 0.0083, "latency_ms": 23.4}},
        "checks": checks,
    }


def speed_dict():
    record = {"backend": "script", "threads": 1, "chunk": 4, "block_ms": 185.8, "steps": 6, "rtf": 0.123,
              "call_ms": 22.9, "latency_ms": 209.2, "latency_samples": 1024}  # fmt: skip
    return {"record": record, "machine": {"cpu": "Test CPU 9000"}}


def test_card_has_every_section_and_the_numbers_it_is_given(tmp_path):
    training = {"data": {"path": "/data/corpus", "hours": 12.5}, "preset": "base", "steps": 250_000,
                "batch_size": 16, "training_time_s": 9000.0, "hardware": "1x H100 80GB"}  # fmt: skip
    path = write_model_card(
        tmp_path / "MODEL_CARD.md",
        model_dict(),
        training=training,
        evaluation=evaluation_dict(),
        speed=speed_dict(),
        limits=["Mono only."],
    )
    text = path.read_text()
    positions = [text.index(section + "\n") for section in SECTIONS]
    assert positions == sorted(positions) and text.startswith("# Model card: demo")
    for expected in [
        "44100 Hz", "6 steps", "timbre guidance 1.5", "structure guidance 1.25", "Training preset: base",
        "/data/corpus", "12.5", "Steps: 250000", "Batch size: 16", "Training time: 2.5 h", "1x H100 80GB",
        "40 held-out triplets, seed 3, 14 target families",
        "| timbre_id | audio_to_audio | 0.810 | 0.7 | **pass**",
        "12.345 [11.345, 13.345]", "321.50", "Real-time factor: 0.123", "Latency: 209.2 ms", "Test CPU 9000",
        "Offline audio_to_audio: 0.008", "- Mono only.", "6,200,000",
    ]:  # fmt: skip
        assert expected in text, expected
    limits = text[text.index("## Known limits") :]
    assert "Fails the check beats_copies" in limits and "timbre_id" not in limits  # only failures listed


def test_missing_facts_are_written_as_unknown():
    text = model_card_markdown(model_dict(source=None, timbre_map=False))
    for line in ("Hardware: unknown", "Training time: unknown", "Steps: unknown", "Dataset: unknown"):
        assert line in text
    assert "Not evaluated yet" in text and "Streaming speed: not measured." in text
    assert "2-D timbre map: no" in text and "built in memory" in text


def test_known_limits_follow_the_checks_and_notices():
    evaluation = evaluation_dict()
    evaluation["checks"].append(
        {"name": "midi_note_f1", "system": "midi_to_audio", "status": "n/a", "value": None,
         "threshold": 0.8, "detail": "system not evaluated"}
    )  # fmt: skip
    evaluation["notices"] = ["note/onset F1 unavailable: transcription turned off"]
    limits = known_limits(evaluation, ["extra"])
    assert any("Fails the check beats_copies" in line for line in limits)
    assert any("midi_note_f1 (midi_to_audio) not established" in line for line in limits)
    assert "Note/onset F1 unavailable: transcription turned off." in limits and limits[-1] == "extra"


def test_model_facts_describe_the_bundle(bundle):
    facts = model_facts(bundle)
    assert facts["name"] == "card-test" and facts["mode"] == "audio"
    assert facts["sample_rate"] == bundle.sample_rate and facts["hop"] == bundle.hop
    assert facts["chunk_frames"] == bundle.chunk_size and facts["steps"] == bundle.diffusion_config.n_steps
    assert facts["diffusion_parameters"] == sum(p.numel() for p in bundle.model.parameters())
    assert facts["latency_ms"] > 0
    json.dumps(facts)  # JSON-ready
    assert "## Presets" in model_card_markdown(facts)


def test_training_facts_from_a_run_folder(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    config = {"kind": "diffusion", "preset": "tiny", "data": {"path": str(tmp_path / "missing-dataset")},
              "training": {"batch_size": 8}, "codec": {"path": "/codec", "hop": 1024}}  # fmt: skip
    (run / "config.json").write_text(json.dumps(config))
    for step in (100, 2500):
        (run / "checkpoints" / f"step{step:08d}.ckpt").write_bytes(b"")
    start = 1_700_000_000
    os.utime(run / "config.json", (start, start))
    os.utime(run / "checkpoints" / "step00002500.ckpt", (start + 5400, start + 5400))
    facts = training_facts(run_dir=run)
    assert facts["preset"] == "tiny" and facts["steps"] == 2500 and facts["batch_size"] == 8
    assert facts["training_time_s"] == pytest.approx(5400.0)
    assert facts["data"]["path"].endswith("missing-dataset") and facts["hardware"] == UNKNOWN
    (run / "training.json").write_text(json.dumps({"hardware": "2x A100", "notes": "EMA weights"}))
    facts = training_facts(run_dir=run)
    assert facts["hardware"] == "2x A100"
    text = model_card_markdown(model_dict(), training=facts)
    assert "Training time: 1.5 h (from the run's start to its last checkpoint" in text
    assert "Hardware: 2x A100" in text and "Notes: EMA weights" in text and "Steps: 2500" in text


def test_training_facts_of_a_bundle_without_a_run(bundle):
    facts = training_facts(bundle)
    assert {facts[k] for k in ("data", "preset", "steps", "training_time_s", "hardware")} == {UNKNOWN}
