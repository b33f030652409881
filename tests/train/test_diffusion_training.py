"""Diffusion training: items, the loss falls, phases/adversary/EMA behave, resume is exact, bad input."""

import copy
import dataclasses

import lightning as L
import numpy as np
import pytest
import torch

from after.codec.config import codec_preset
from after.codec.load import load_codec
from after.codec.model import Codec
from after.config import to_dict
from after.data.dataset import FAMILY_LABELS
from after.data.records import ChunkRecord, FileEntry, chunk_key, create_dataset
from after.diffusion.config import (
    ClassifierConfig,
    DenoiserConfig,
    MidiEncoderConfig,
    StructureEncoderConfig,
    TimbreEncoderConfig,
    diffusion_preset,
)
from after.errors import BadInputError, DatasetError, ModelFileError
from after.train.codec_module import codec_run_config, codec_training_preset
from after.train.diffusion_run import (
    check_structure_input,
    load_diffusion_run,
    load_run_codec,
    train_diffusion,
)
from after.train.latent_data import LatentCrops, frames_outside, latent_splits
from after.train.run import CONFIG_KEY, RunFolder, TrainerOptions, load_checkpoint

torch.set_num_threads(1)

CHUNK_FRAMES = 48
CROP = 16
N_FILES = 12
SINGLE_CHUNK_FILES = {10, 11}


# -- fixtures ---------------------------------------------------------------------------------------------
def make_codec_run(folder, latent_dim: int = 16, seed: int = 0):
    """A run folder holding a seeded random tiny codec (untrained: plumbing only)."""
    torch.manual_seed(seed)
    preset = dataclasses.replace(codec_preset("tiny"), latent_dim=latent_dim)
    config = codec_run_config("tiny", to_dict(preset), codec_training_preset("tiny"), {"path": "none"})
    codec = Codec.from_config(preset)
    run = RunFolder(folder)
    run.save_config(config)
    run.checkpoint_dir.mkdir(parents=True)
    state = {f"codec.{k}": v for k, v in codec.state_dict().items()}
    torch.save({"state_dict": state, CONFIG_KEY: config, "global_step": 1}, run.checkpoint_path(1))
    return run.path


def synthetic_latents(file: int, chunk: int, family: int, dim: int) -> np.ndarray:
    """Latents ``[D, CHUNK_FRAMES]``: channels 0-2 tag (file, chunk, frame); the others follow a
    family-dependent offset plus a slow sine, so a model can learn them."""
    rng = np.random.default_rng(100 * file + chunk)
    frames = np.arange(CHUNK_FRAMES)
    z = np.zeros((dim, CHUNK_FRAMES), dtype=np.float32)
    z[0], z[1], z[2] = file / N_FILES, chunk / 4, frames / CHUNK_FRAMES
    offsets = np.random.default_rng(family).uniform(-1.0, 1.0, dim - 3)
    phase = rng.uniform(0, 2 * np.pi)
    z[3:] = offsets[:, None] + 0.5 * np.sin(2 * np.pi * frames / 12 + phase)[None] * np.sign(offsets)[:, None]
    return z


def write_dataset(path, codec, with_latents: bool = True) -> None:
    """A dataset of N_FILES files (two chunks each, one for SINGLE_CHUNK_FILES) with synthetic latents."""
    chunk_samples = CHUNK_FRAMES * codec.hop
    seconds = chunk_samples / codec.sample_rate
    store = create_dataset(path, codec.sample_rate, chunk_samples)
    latents = {}
    for file in range(N_FILES):
        name = f"f{file:02d}.wav"
        family = file % 3
        n_chunks = 1 if file in SINGLE_CHUNK_FILES else 2
        records = {}
        for chunk in range(n_chunks):
            key = chunk_key(name, chunk)
            notes = np.array([[48 + family * 12 + k, 90, 0.3 * k, 0.3 * k + 0.25, 0, 0] for k in range(6)])
            meta = {"offset_s": chunk * seconds, "audio_seconds": seconds, "family": FAMILY_LABELS[family]}
            records[key] = ChunkRecord(audio=np.zeros(chunk_samples, np.float32), notes=notes, metadata=meta)
            latents[key] = synthetic_latents(file, chunk, family, codec.latent_dim)
        info = {"family": FAMILY_LABELS[family], "program": 8 * family}
        store.commit_file(FileEntry(name, 0, 0, "done", chunk_keys=tuple(records), info=info), records)
    if with_latents:
        store.add_latents(codec.codec_id, codec.info(), latents)
    store.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusion")
    codec_dir = make_codec_run(root / "codec")
    codec = load_codec(codec_dir)
    write_dataset(root / "data", codec)
    return {"root": root, "codec": codec_dir, "codec_id": codec.codec_id, "data": root / "data"}


def small_model(mode: str = "audio"):
    """A reduced model config (fast on one CPU thread)."""
    base = diffusion_preset("tiny_midi" if mode == "midi" else "tiny")
    return dataclasses.replace(
        base,
        denoiser=DenoiserConfig(dim=64, n_layers=2, n_heads=4, chunk_size=1, window=16, time_dim=32,
                                structure_embed_dim=16),
        timbre=TimbreEncoderConfig(channels=32, dilations=(1, 2), se_dim=8, attention_dim=16),
        structure=StructureEncoderConfig(channels=(32,), kernel_size=3),
        classifier=ClassifierConfig(channels=(16, 16)),
        midi=MidiEncoderConfig(channels=(32,), kernel_size=3),
    )  # fmt: skip


def options(**changes) -> TrainerOptions:
    base = dict(accelerator="cpu", progress_bar=False, log_every=1, max_steps=4)
    return TrainerOptions(**{**base, **changes})


def training(**changes):
    base = dict(batch_size=6, crop_frames=CROP, val_batches=1, val_every=10_000, checkpoint_every=10_000,
                validation_fraction=0.4, learning_rate=2e-3, classifier_learning_rate=2e-3, ema_decay=0.9,
                val_sample_steps=2)  # fmt: skip
    return {**base, **changes}


class Snapshots(L.Callback):
    """Parameters of every part (raw and EMA) after each training batch."""

    def __init__(self) -> None:
        self.steps = {}

    def on_train_batch_end(self, trainer, module, *args) -> None:
        def flat(m):
            return torch.cat([p.detach().flatten().clone() for p in m.parameters()])

        self.steps[trainer.global_step] = {
            "timbre": flat(module.model.timbre_encoder),
            "structure": flat(module.model.structure_encoder),
            "classifier": flat(module.model.classifier) if module.model.classifier is not None else None,
            "denoiser": flat(module.model.denoiser),
            "ema_denoiser": flat(module.ema.module.denoiser),
            "ema_timbre": flat(module.ema.module.timbre_encoder),
            "timbre_training": module.model.timbre_encoder.training,
            "flow": float(trainer.callback_metrics["train/flow"]),
        }


# -- data -------------------------------------------------------------------------------------------------
def test_reference_is_another_excerpt_of_the_same_file_shuffled(world):
    data = LatentCrops(world["data"], world["codec_id"], CROP, split="all", shuffle_sizes=(4,))
    torch.manual_seed(0)
    shuffled = 0
    for index in range(len(data)):
        item = data[index]
        x1, ref = item["x1"], item["reference"]
        file = round(float(x1[0, 0]) * N_FILES)
        assert torch.allclose(ref[0], x1[0])  # same source file
        target_frames = set(torch.round(x1[2] * CHUNK_FRAMES).long().tolist())
        ref_frames = torch.round(ref[2] * CHUNK_FRAMES).long()
        if file in SINGLE_CHUNK_FILES:  # same chunk: frames never overlap the target crop
            assert not target_frames & set(ref_frames.tolist())
        else:  # the other chunk of the file
            assert float(ref[1, 0]) != float(x1[1, 0])
        shuffled += int(not bool((ref_frames[1:] >= ref_frames[:-1]).all()))
        assert torch.equal(item["structure"], x1)  # audio mode: structure = the same crop
        assert FAMILY_LABELS[int(item["family"])] == FAMILY_LABELS[file % 3]
    assert shuffled > len(data) // 2


def test_midi_items_carry_the_piano_roll_of_the_crop(world):
    data = LatentCrops(world["data"], world["codec_id"], CROP, mode="midi", split="validation")
    first, again = data[0], data[0]
    assert first["structure"].shape == (2, 128, CROP)
    assert first["structure"].sum() > 0
    assert torch.equal(first["reference"], again["reference"])  # validation items are reproducible


def with_twins(world, path):
    """A copy of the world's dataset whose twins are the latents of another family (same frames)."""
    import shutil

    from after.data.records import open_dataset
    from after.data.twins import twin_id

    shutil.copytree(world["data"], path)
    with open_dataset(path, readonly=False) as store:
        twins = {}
        for key in store.chunk_keys():
            z = store.get(key).latents[world["codec_id"]]
            file, chunk = round(float(z[0, 0]) * N_FILES), round(float(z[1, 0]) * 4)
            other = (file % 3 + 1 + (file + chunk) % 2) % 3  # either other family: no fixed mapping
            twins[key] = synthetic_latents(file, chunk, other, z.shape[0])
        store.add_latents(twin_id(world["codec_id"]), store.meta.codecs[world["codec_id"]], twins)
    return path


def test_structure_twins_replace_the_structure_at_the_same_frames(world, tmp_path):
    data_path = with_twins(world, tmp_path / "twins")
    always = LatentCrops(data_path, world["codec_id"], CROP, split="all", structure_twins=1.0)
    torch.manual_seed(0)
    for index in range(len(always)):
        item = always[index]
        x1, structure = item["x1"], item["structure"]
        assert torch.equal(structure[:3], x1[:3])  # same file, chunk and frames: aligned
        assert not torch.allclose(structure[3:], x1[3:])  # another family's sound
    half = LatentCrops(data_path, world["codec_id"], CROP, split="all", structure_twins=0.5)
    items = [half[i % len(half)] for i in range(80)]
    picks = [torch.equal(item["structure"], item["x1"]) for item in items]
    assert 20 < sum(picks) < 60  # a mix of both
    with pytest.raises(DatasetError, match=r"--structure-twins needs.*after encode .* --twins"):
        latent_splits(world["data"], world["codec_id"], CROP, structure_twins=0.5)
    with pytest.raises(DatasetError, match=r"structure_twins must be in \[0, 1\]"):
        LatentCrops(data_path, world["codec_id"], CROP, structure_twins=1.5)


def test_frames_outside_tiles_when_little_is_left():
    z = torch.arange(10.0)[None]  # [1, 10]
    out = frames_outside(z, 3, 6)
    assert out.shape == (1, 6) and not set(out[0].tolist()) & set(range(3, 9))
    assert frames_outside(z[:, :6], 0, 6) is None


def test_dataset_without_latents_is_refused_with_the_command(world, tmp_path):
    write_dataset(tmp_path / "bare", load_codec(world["codec"]), with_latents=False)
    with pytest.raises(DatasetError, match=r"bare.*after encode .*bare --codec .*codec"):
        latent_splits(tmp_path / "bare", world["codec_id"], CROP, codec_source=str(world["codec"]))
    with pytest.raises(DatasetError, match="after encode"):
        train_diffusion(tmp_path / "run", tmp_path / "bare", world["codec"], diffusion=small_model(),
                        changes=training(), options=options())  # fmt: skip


# -- training ---------------------------------------------------------------------------------------------
def test_flow_loss_falls(world, tmp_path):
    record = Snapshots()
    train_diffusion(tmp_path / "run", world["data"], world["codec"], diffusion=small_model(),
                    changes=training(phase1_steps=150, batch_size=8), options=options(max_steps=240),
                    callbacks=[record])  # fmt: skip
    flows = [record.steps[s]["flow"] for s in sorted(record.steps)]
    assert np.mean(flows[-40:]) < 0.6 * np.mean(flows[:10])


def test_phases_adversary_and_ema(world, tmp_path):
    record = Snapshots()
    run = tmp_path / "run"
    train_diffusion(run, world["data"], world["codec"], diffusion=small_model(),
                    changes=training(phase1_steps=3, adversarial_warmup=2, val_every=6),
                    options=options(max_steps=7), callbacks=[record])  # fmt: skip
    s = record.steps
    assert sorted(s) == list(range(1, 8))  # one global step per batch despite two optimisers
    # phase 1 (steps 1-3): timbre encoder learns, structure encoder and classifier do not
    assert not torch.equal(s[1]["timbre"], s[3]["timbre"])
    assert torch.equal(s[1]["structure"], s[3]["structure"])
    assert torch.equal(s[1]["classifier"], s[3]["classifier"])
    # phase 2 (steps 4-7): timbre frozen in eval mode; structure encoder and classifier move each step
    for step in range(4, 8):
        assert torch.equal(s[step]["timbre"], s[3]["timbre"])
        assert not s[step]["timbre_training"]
        assert not torch.equal(s[step]["structure"], s[step - 1]["structure"])
        assert not torch.equal(s[step]["classifier"], s[step - 1]["classifier"])
        assert torch.equal(s[step]["ema_timbre"], s[step]["timbre"])  # EMA holds the frozen encoder
    # EMA: ema_n = d * ema_{n-1} + (1 - d) * raw_n, distinct from the raw weights
    decay = 0.9
    for step in range(2, 8):
        expected = decay * s[step - 1]["ema_denoiser"] + (1 - decay) * s[step]["denoiser"]
        torch.testing.assert_close(s[step]["ema_denoiser"], expected, rtol=1e-5, atol=1e-6)
        assert not torch.equal(s[step]["ema_denoiser"], s[step]["denoiser"])
    # validation at step 6 logged the leakage probe and audio examples
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "logs"), size_guidance={"audio": 0}).Reload()
    assert "val/probe_accuracy" in events.Tags()["scalars"]
    assert "val/flow" in events.Tags()["scalars"]
    assert {"audio/0/target", "audio/0/reconstruction", "audio/0/transfer"} <= set(events.Tags()["audio"])
    # the EMA weights load back as the model
    model, config, train_config = load_diffusion_run(run)
    assert train_config.phase1_steps == 3 and config.latent_dim == 16
    ema_denoiser = torch.cat([p.flatten() for p in model.denoiser.parameters()])
    torch.testing.assert_close(ema_denoiser, s[7]["ema_denoiser"])
    raw, _, _ = load_diffusion_run(run, ema=False)
    torch.testing.assert_close(torch.cat([p.flatten() for p in raw.denoiser.parameters()]), s[7]["denoiser"])


def test_timbre_encoder_keeps_learning_in_phase2_when_not_frozen(world, tmp_path):
    record = Snapshots()
    data_path = with_twins(world, tmp_path / "twins")
    train_diffusion(tmp_path / "run", data_path, world["codec"], diffusion=small_model(),
                    changes=training(phase1_steps=2, freeze_timbre=False, structure_twins=0.8),
                    options=options(max_steps=5), callbacks=[record])  # fmt: skip
    s = record.steps
    for step in range(3, 6):  # phase 2: every part moves, the timbre encoder too, in training mode
        assert not torch.equal(s[step]["timbre"], s[step - 1]["timbre"])
        assert s[step]["timbre_training"]
        assert not torch.equal(s[step]["structure"], s[step - 1]["structure"])
        assert not torch.equal(s[step]["classifier"], s[step - 1]["classifier"])
    _, _, saved = load_diffusion_run(tmp_path / "run")
    assert saved.structure_twins == 0.8 and saved.freeze_timbre is False


def follows_reference(run, data_path, codec_id) -> float:
    """Share of (structure, reference) pairs of different families where the sampled output's
    family offsets (channels 3+) are closer to the reference's family than to the structure's."""
    model, config, _ = load_diffusion_run(run)
    data = LatentCrops(data_path, codec_id, CROP, split="all", deterministic=True, shuffle_sizes=())
    items = [data[i] for i in range(len(data))]
    offsets = {f: np.random.default_rng(f).uniform(-1.0, 1.0, config.latent_dim - 3) for f in range(3)}
    hits = total = 0
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for a in items:
            for b in items:
                fa, fb = int(a["family"]), int(b["family"])
                if fa == fb:
                    continue
                c = model.encode_timbre(b["x1"][None])  # reference: b's sound
                s = model.encode_structure(a["x1"][None])  # structure: a itself, a's sound
                noise = torch.randn(1, config.latent_dim, CROP, generator=generator)
                z = model.sample(noise, c, s, 8)[0, 3:].mean(dim=-1).numpy()  # [D - 3]
                hits += np.linalg.norm(z - offsets[fb]) < np.linalg.norm(z - offsets[fa])
                total += 1
    return hits / total


def test_with_twins_the_output_takes_the_reference_sound(world, tmp_path):
    """Trained with twins as structure, the model gives the reference's family even when the
    structure input carries another family's sound; trained on the target itself, it copies the
    structure's sound."""
    data_path = with_twins(world, tmp_path / "twins")
    common = dict(phase1_steps=0, adversarial_weight=0.0, freeze_timbre=False, batch_size=8)
    shares = {}
    for twins in (0.0, 1.0):
        run = tmp_path / f"run{twins}"
        train_diffusion(run, data_path, world["codec"], diffusion=small_model(),
                        changes=training(structure_twins=twins, **common),
                        options=options(max_steps=300))  # fmt: skip
        shares[twins] = follows_reference(run, data_path, world["codec_id"])
    assert shares[1.0] > 0.8 and shares[0.0] < 0.2, shares  # measured: 0.97 and 0.0


class StartState(L.Callback):
    def on_train_start(self, trainer, module) -> None:
        self.step = trainer.global_step
        self.optimizers = [copy.deepcopy(opt.state_dict()) for opt in trainer.optimizers]
        self.weights = {k: v.clone() for k, v in module.state_dict().items()}


def test_stop_and_resume_continue_at_the_same_step(world, tmp_path):
    run = tmp_path / "run"
    common = dict(diffusion=small_model(), changes=training(phase1_steps=2, checkpoint_every=2))
    train_diffusion(run, world["data"], world["codec"], options=options(max_steps=4), **common)
    saved = load_checkpoint(RunFolder(run).checkpoint_path(4))
    start = StartState()
    train_diffusion(run, world["data"], world["codec"], options=options(max_steps=6), resume=True,
                    callbacks=[start], **common)  # fmt: skip
    assert start.step == 4
    assert len(start.optimizers) == 2 == len(saved["optimizer_states"])
    for now, then in zip(start.optimizers, saved["optimizer_states"]):
        assert now["state"].keys() == then["state"].keys() and now["state"]
        for key in now["state"]:
            for name, value in now["state"][key].items():
                torch.testing.assert_close(value, then["state"][key][name])
    for key, value in saved["state_dict"].items():
        torch.testing.assert_close(start.weights[key], value)
    assert RunFolder(run).latest_checkpoint() == RunFolder(run).checkpoint_path(6)
    with pytest.raises(BadInputError, match="already holds checkpoints"):
        train_diffusion(run, world["data"], world["codec"], options=options(max_steps=8), **common)


# -- bad input and loading --------------------------------------------------------------------------------
def test_codec_of_another_latent_size_is_refused(world, tmp_path):
    run = tmp_path / "run"
    common = dict(diffusion=small_model(), changes=training(phase1_steps=1))
    train_diffusion(run, world["data"], world["codec"], options=options(max_steps=1), **common)
    other = make_codec_run(tmp_path / "codec8", latent_dim=8)
    with pytest.raises(BadInputError, match=r"8 latent channels.*16"):
        train_diffusion(run, world["data"], other, options=options(max_steps=2), resume=True, **common)
    with pytest.raises(BadInputError, match=r"codec8.*8 latent channels.*trained on 16"):
        load_run_codec(run, other)
    assert load_run_codec(run).latent_dim == 16  # the recorded codec loads


def test_midi_run_trains_loads_and_refuses_audio_structure(world, tmp_path):
    run = tmp_path / "midi"
    train_diffusion(run, world["data"], world["codec"], preset="tiny_midi", diffusion=small_model("midi"),
                    changes=training(), options=options(max_steps=2))  # fmt: skip
    model, config, _ = load_diffusion_run(run, step=2)
    assert config.mode == "midi" and model.classifier is None
    roll = torch.zeros(1, 2, 128, 8)
    check_structure_input(config, roll, str(run))
    z = model.sample(
        torch.randn(1, 16, 8), torch.zeros(1, config.timbre_dim), model.encode_structure(roll), 2
    )
    assert z.shape == (1, 16, 8) and torch.isfinite(z).all()
    with pytest.raises(BadInputError, match=r"MIDI-mode model.*piano roll.*\(1, 16, 8\)"):
        check_structure_input(config, torch.zeros(1, 16, 8), str(run))
    with pytest.raises(BadInputError, match="audio-mode model"):
        check_structure_input(dataclasses.replace(config, mode="audio"), roll, "m")


def test_missing_or_corrupt_checkpoints_are_refused(world, tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_diffusion_run(tmp_path / "nowhere")
    run = RunFolder(tmp_path / "run")
    run.checkpoint_dir.mkdir(parents=True)
    with pytest.raises(ModelFileError, match="holds no checkpoint"):
        load_diffusion_run(run.path)
    run.checkpoint_path(5).write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match=r"step00000005.ckpt: not a loadable checkpoint"):
        load_diffusion_run(run.path)
    with pytest.raises(ModelFileError, match=r"no checkpoint of step 9 \(steps available: 5\)"):
        load_diffusion_run(run.path, step=9)
    codec_ckpt = next((world["codec"] / "checkpoints").glob("*.ckpt"))
    with pytest.raises(ModelFileError, match="not a diffusion run"):
        load_diffusion_run(codec_ckpt)


def test_init_from_copies_the_averaged_weights_into_a_new_run(world, tmp_path):
    source = tmp_path / "source"
    common = dict(diffusion=small_model(), changes=training(phase1_steps=1))
    train_diffusion(source, world["data"], world["codec"], options=options(max_steps=6), **common)
    averaged, _, _ = load_diffusion_run(source)
    start = StartState()
    train_diffusion(tmp_path / "tuned", world["data"], world["codec"], options=options(max_steps=1),
                    callbacks=[start], init_from=source, **common)  # fmt: skip
    for key, value in averaged.state_dict().items():
        torch.testing.assert_close(start.weights[f"model.{key}"], value)
        torch.testing.assert_close(start.weights[f"ema.module.{key}"], value)
    wider = dataclasses.replace(small_model(), denoiser=dataclasses.replace(small_model().denoiser, dim=32))
    with pytest.raises(BadInputError, match=r"architecture differs.*denoiser"):
        train_diffusion(tmp_path / "wide", world["data"], world["codec"], options=options(max_steps=1),
                        diffusion=wider, changes=training(), init_from=source)  # fmt: skip


def test_init_timbre_from_takes_only_the_timbre_encoder_of_a_midi_model(world, tmp_path):
    midi = tmp_path / "midi"
    train_diffusion(midi, world["data"], world["codec"], preset="tiny_midi", diffusion=small_model("midi"),
                    changes=training(), options=options(max_steps=3))  # fmt: skip
    averaged, _, _ = load_diffusion_run(midi)
    start = StartState()
    train_diffusion(tmp_path / "audio", world["data"], world["codec"], diffusion=small_model(),
                    changes=training(phase1_steps=1), options=options(max_steps=1), callbacks=[start],
                    init_timbre_from=midi)  # fmt: skip
    for key, value in averaged.timbre_encoder.state_dict().items():
        torch.testing.assert_close(start.weights[f"model.timbre_encoder.{key}"], value)
        torch.testing.assert_close(start.weights[f"ema.module.timbre_encoder.{key}"], value)
    same_shape = [
        (start.weights[f"model.denoiser.{k}"], v)
        for k, v in averaged.denoiser.state_dict().items()
        if start.weights[f"model.denoiser.{k}"].shape == v.shape and v.float().abs().sum() > 0
    ]
    assert same_shape and not any(torch.equal(mine, theirs.float()) for mine, theirs in same_shape)
    other = dataclasses.replace(small_model(), timbre_dim=4)
    with pytest.raises(BadInputError, match=r"--init-timbre-from .*midi: timbre encoder differs \(timbre_d"):
        train_diffusion(tmp_path / "narrow", world["data"], world["codec"], options=options(max_steps=1),
                        diffusion=other, changes=training(), init_timbre_from=midi)  # fmt: skip
