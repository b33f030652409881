"""recipes/default_model.sh runs end to end at a micro scale, skips finished stages and resumes.

Slow (several minutes on two cores): synth 1 minute -> prepare -> codec -> encode -> audio and MIDI
diffusion models -> decoder-only codec stage -> released folders that load with
:func:`after.runtime.bundle.load_bundle`.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "default_model.sh"


def run_recipe(work: Path, models: Path, **overrides: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "WORK": str(work),
        "MODELS_DIR": str(models),
        "MINUTES": "1",
        "ACCELERATOR": "cpu",
        "CODEC_STEPS": "12",
        "AUDIO_STEPS": "12",
        "MIDI_STEPS": "12",
        "DECODER_STEPS": "6",
        "CODEC_BATCH": "2",
        "AUDIO_BATCH": "4",
        "MIDI_BATCH": "4",
        "CODEC_CROP": "16384",
        "CHECKPOINT_EVERY": "6",
        "MAP_STEPS": "20",
        "FP16": "1",
        "AFTER": str(Path(sys.executable).with_name("after")),
        "OMP_NUM_THREADS": "1",
        **overrides,
    }
    return subprocess.run(["bash", str(RECIPE)], env=env, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
def test_recipe_builds_loadable_models_and_resumes(tmp_path):
    import torch

    from after.data.records import open_dataset
    from after.data.twins import twin_id
    from after.runtime.bundle import load_bundle
    from after.train.run import checkpoint_step

    work, models = tmp_path / "work", tmp_path / "models"
    first = run_recipe(work, models)
    assert first.returncode == 0, first.stderr[-4000:]
    for name, mode in (("default", "audio"), ("default-midi", "midi")):
        bundle = load_bundle(models / name)
        assert bundle.mode == mode and bundle.sample_rate == 22050
        assert bundle.timbre_map is not None
        # float16 storage loads back into float32 modules
        assert all(p.dtype == torch.float32 for p in bundle.codec.parameters())
    codec_steps = [checkpoint_step(p) for p in (work / "codec" / "checkpoints").glob("*.ckpt")]
    assert max(codec_steps) == 12
    # the audio model trained with structure twins, which the dataset holds
    training = json.loads((work / "audio" / "config.json").read_text())["training"]
    assert training["structure_twins"] == 0.8 and training["freeze_timbre"] is False
    with open_dataset(work / "data") as store:
        assert twin_id(training["codec_id"]) in store.meta.codecs
    released = load_bundle(models / "default").diffusion_config
    assert released.guidance_timbre == released.guidance_structure == 2.0
    midi = load_bundle(models / "default-midi").diffusion_config
    assert (midi.guidance_timbre, midi.guidance_structure) == (1.5, 2.0)
    # the released codec: the codec run's encoder (the latents the models learnt) with the decoder
    # of the decoder-only stage
    from after.codec.load import load_codec

    codec = load_codec(work / "codec").module.state_dict()
    decoder = load_codec(work / "decoder").module.state_dict()
    assert any(not torch.equal(codec[k], decoder[k]) for k in codec if k.startswith("decoder."))
    for name in ("default", "default-midi"):
        for key, value in load_bundle(models / name).codec.state_dict().items():
            source = decoder if key.startswith("decoder.") else codec
            torch.testing.assert_close(value, source[key].half().float())
    assert "timbre encoder initialised from" in first.stderr
    # one codec file for both models: the MIDI model names the audio model's
    assert not (models / "default-midi" / "codec.safetensors").exists()
    assert json.loads((models / "default-midi" / "model.json").read_text())["codec_file"] == (
        "../default/codec.safetensors"
    )

    # a second run with the same parameters skips every stage
    again = run_recipe(work, models)
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stderr.count(": done") >= 9, again.stderr

    # more codec steps: the codec resumes from its checkpoint (step 12 -> 18), later stages rerun
    more = run_recipe(work, models, CODEC_STEPS="18")
    assert more.returncode == 0, more.stderr[-4000:]
    assert "synth: done" in more.stderr and "prepare: done" in more.stderr
    codec_steps = [checkpoint_step(p) for p in (work / "codec" / "checkpoints").glob("*.ckpt")]
    assert max(codec_steps) == 18
    assert "decoder: codec changed" in more.stderr
    assert load_bundle(models / "default").mode == "audio"
    assert load_bundle(models / "default-midi").mode == "midi"  # re-released beside the new codec
