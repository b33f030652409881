"""Released model folders: round trip, tampered or mismatched files refused, name resolution."""

import json

import numpy as np
import pytest
import torch

from after.codec.config import CodecConfig, codec_preset
from after.config import from_dict
from after.diffusion.config import diffusion_preset
from after.errors import ModelFileError
from after.runtime import bundle as bundle_module
from after.runtime.bundle import MODEL_FILE, load_bundle, random_bundle, release_bundle
from after.runtime.pipeline import build_pipeline
from after.runtime.timbre_map import fit_timbre_map


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    bundle = random_bundle(codec_preset("tiny"), diffusion_preset("tiny"), seed=2, name="tiny-test")
    vectors = np.random.default_rng(0).standard_normal((12, bundle.timbre_dim)).astype(np.float32)
    bundle.timbre_map = fit_timbre_map(vectors, steps=20)
    folder = release_bundle(bundle, tmp_path_factory.mktemp("models") / "tiny-test")
    return bundle, folder


def copy_folder(folder, destination):
    destination.mkdir()
    for item in folder.iterdir():
        (destination / item.name).write_bytes(item.read_bytes())
    return destination


def test_release_round_trip_gives_the_same_model(released):
    bundle, folder = released
    assert sorted(p.name for p in folder.iterdir()) == [
        "codec.safetensors",
        "diffusion.safetensors",
        MODEL_FILE,
        "timbre_map.safetensors",
    ]
    loaded = load_bundle(folder)
    assert loaded.codec_config == bundle.codec_config
    assert loaded.diffusion_config == bundle.diffusion_config
    assert (loaded.name, loaded.mode, loaded.hop, loaded.sample_rate) == ("tiny-test", "audio", 1024, 22050)
    for original, copy in (
        (bundle.codec, loaded.codec),
        (bundle.model, loaded.model),
        (bundle.timbre_map, loaded.timbre_map),
    ):
        a, b = original.state_dict(), copy.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    structure = np.sin(np.arange(5000) / 7.0).astype(np.float32) * 0.3
    first = build_pipeline(bundle, steps=2).transfer(structure)
    second = build_pipeline(loaded, steps=2).transfer(structure)
    np.testing.assert_array_equal(first, second)
    assert load_bundle(folder / MODEL_FILE).name == "tiny-test"  # the description file itself works too
    # weights are as readable as model.json (shared model folders are read by other users)
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    assert len(set(modes.values())) == 1, modes


def test_tampered_weights_are_refused(released, tmp_path):
    folder = copy_folder(released[1], tmp_path / "tampered")
    path = folder / "diffusion.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"diffusion\.safetensors: sha256 .* does not match"):
        load_bundle(folder)


def test_config_that_does_not_match_the_weights_is_refused(released, tmp_path):
    folder = copy_folder(released[1], tmp_path / "mismatch")
    description = json.loads((folder / MODEL_FILE).read_text())
    description["diffusion"]["denoiser"]["dim"] = 96
    (folder / MODEL_FILE).write_text(json.dumps(description))
    with pytest.raises(ModelFileError, match="diffusion weights do not match the config"):
        load_bundle(folder)
    description = json.loads((released[1] / MODEL_FILE).read_text())
    description["sample_rate"] = 44100
    (folder / MODEL_FILE).write_text(json.dumps(description))
    with pytest.raises(ModelFileError, match="sample_rate is 44100 but the configs give 22050"):
        load_bundle(folder)
    description["format_version"] = 99
    (folder / MODEL_FILE).write_text(json.dumps(description))
    with pytest.raises(ModelFileError, match="format version 99"):
        load_bundle(folder)


def test_names_and_bad_paths(released, tmp_path, monkeypatch):
    monkeypatch.setattr(bundle_module, "models_dir", lambda: tmp_path)
    with pytest.raises(ModelFileError, match="no default model is installed yet"):
        load_bundle(None)
    copy_folder(released[1], tmp_path / "default")
    copy_folder(released[1], tmp_path / "other")
    assert load_bundle(None).name == "tiny-test"
    assert load_bundle("other").source == tmp_path / "other"
    with pytest.raises(ModelFileError, match=r"no packaged model of that name.*default, other"):
        load_bundle("missing")
    with pytest.raises(ModelFileError, match="model not found"):
        load_bundle(tmp_path / "nowhere" / "model")
    (tmp_path / "file.wav").write_bytes(b"RIFF")
    with pytest.raises(ModelFileError, match="is a file, not a model"):
        load_bundle(tmp_path / "file.wav")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="not a model folder"):
        load_bundle(tmp_path / "empty")


def make_runs(root):
    """A codec run and a diffusion run (random weights, one checkpoint each), as training writes them."""
    from after.codec.load import load_codec
    from after.config import to_dict
    from after.train.codec_module import codec_run_config, codec_training_preset
    from after.train.diffusion_config import train_preset
    from after.train.diffusion_run import codec_section, diffusion_run_config
    from after.train.run import CONFIG_KEY, RunFolder

    bundle = random_bundle(codec_preset("tiny"), diffusion_preset("tiny"), seed=4)
    codec_run = RunFolder(root / "codec")
    config = codec_run_config(
        "tiny", to_dict(bundle.codec_config), codec_training_preset("tiny"), {"path": "-"}
    )
    codec_run.save_config(config)
    codec_run.checkpoint_dir.mkdir(parents=True)
    state = {f"codec.{k}": v for k, v in bundle.codec.state_dict().items()}
    torch.save({"state_dict": state, CONFIG_KEY: config}, codec_run.checkpoint_path(1))
    section = codec_section(load_codec(codec_run.path), codec_run.path)
    run = RunFolder(root / "diffusion")
    config = diffusion_run_config(
        "tiny", bundle.diffusion_config, train_preset("tiny"), {"path": "-"}, section
    )
    run.save_config(config)
    run.checkpoint_dir.mkdir(parents=True)
    state = {f"ema.module.{k}": v for k, v in bundle.model.state_dict().items()}
    torch.save({"state_dict": state, CONFIG_KEY: config}, run.checkpoint_path(2))
    return bundle, run.path


def test_run_folder_loads_and_releases(tmp_path):
    bundle, run_dir = make_runs(tmp_path)
    loaded = load_bundle(run_dir)
    assert loaded.name == "diffusion" and loaded.codec_config == bundle.codec_config
    assert loaded.diffusion_config == bundle.diffusion_config
    released = load_bundle(release_bundle(loaded, tmp_path / "released"))
    structure = np.cos(np.arange(4096) / 5.0).astype(np.float32) * 0.2
    np.testing.assert_array_equal(
        build_pipeline(bundle, steps=1).transfer(structure),
        build_pipeline(released, steps=1).transfer(structure),
    )


def test_a_released_model_initialises_a_new_codec_and_diffusion_run(released):
    """``--init-from MODEL`` takes the codec and the diffusion weights of a released model folder."""
    from after.codec.model import Codec
    from after.config import to_dict
    from after.diffusion.model import build_model
    from after.errors import BadInputError
    from after.runtime.bundle import is_released_model
    from after.train.codec_module import initialise_codec
    from after.train.diffusion_config import train_preset
    from after.train.diffusion_module import DiffusionModule
    from after.train.diffusion_run import initialise_diffusion

    bundle, folder = released
    assert is_released_model(folder) and not is_released_model(folder / "missing")
    codec = Codec.from_config(bundle.codec_config)
    initialise_codec(codec, to_dict(bundle.codec_config), folder)
    for key, value in load_bundle(folder).codec.state_dict().items():
        torch.testing.assert_close(codec.state_dict()[key], value)
    wider = {**to_dict(bundle.codec_config), "latent_dim": bundle.codec_config.latent_dim * 2}
    with pytest.raises(BadInputError, match=f"{folder.name}.*latent_dim"):
        initialise_codec(codec, wider, folder)

    module = DiffusionModule(
        build_model(bundle.diffusion_config), bundle.diffusion_config, train_preset("tiny")
    )
    initialise_diffusion(module, bundle.diffusion_config, folder)
    for key, value in bundle.model.state_dict().items():
        torch.testing.assert_close(module.model.state_dict()[key], value)
        torch.testing.assert_close(module.ema.module.state_dict()[key], value)


def test_release_stores_default_sampling_settings_that_hosts_start_with(tmp_path):
    from after.cli.main import main
    from after.errors import BadInputError
    from after.runtime.bundle import release_run

    _, run_dir = make_runs(tmp_path)
    out = tmp_path / "tuned"
    args = ["-q", "release", str(run_dir), "--out", str(out), "--map-steps", "5"]
    assert main([*args, "--steps", "6", "--guidance-timbre", "1.5", "--guidance-structure", "2"]) == 0
    config = load_bundle(out).diffusion_config
    assert (config.n_steps, config.guidance_timbre, config.guidance_structure) == (6, 1.5, 2.0)
    engine = build_pipeline(load_bundle(out)).engine
    assert (engine.steps, engine.guidance_timbre, engine.guidance_structure) == (6, 1.5, 2.0)
    plain = load_bundle(release_run(run_dir, tmp_path / "plain", map_steps=5)).diffusion_config
    assert plain == load_bundle(run_dir).diffusion_config  # nothing given: the run's own settings
    for bad, match in (
        (dict(guidance_timbre=-1.0), "guidance_timbre -1.0: expected a finite value >= 0"),
        (dict(guidance_structure=float("nan")), "guidance_structure nan"),
        (dict(steps=0), r"steps 0: expected 1\.\.64"),
    ):
        with pytest.raises(BadInputError, match=match):
            release_run(run_dir, tmp_path / "bad", map_steps=5, **bad)
    assert not (tmp_path / "bad").exists()  # nothing written for a refused value


def test_a_released_model_released_again_keeps_its_timbre_map_and_weights(released, tmp_path):
    """``after release MODEL_DIR``: a released folder as the run gives the same diffusion and codec
    weights and the same timbre map (not a refit on synthetic references) with the new settings;
    with ``--dataset`` the map would be fitted again."""
    from after.cli.main import main

    _, folder = released
    out = tmp_path / "again"
    assert main(["-q", "release", str(folder), "--out", str(out), "--steps", "3", "--map-steps", "5"]) == 0
    again, source = load_bundle(out), load_bundle(folder)
    assert again.diffusion_config.n_steps == 3 and source.diffusion_config.n_steps != 3
    for part in ("timbre_map", "model", "codec"):
        theirs, ours = getattr(source, part).state_dict(), getattr(again, part).state_dict()
        assert theirs.keys() == ours.keys()
        assert all(torch.equal(theirs[key], ours[key]) for key in theirs), part
    # a run folder has no map: it is fitted (the synthetic references give a map of their own)
    _, run_dir = make_runs(tmp_path / "runs")
    assert load_bundle(run_dir).timbre_map is None
    fitted = bundle_module.release_run(run_dir, tmp_path / "fitted", map_steps=5)
    assert load_bundle(fitted).timbre_map is not None


def test_release_with_a_fine_tuned_decoder_keeps_the_encoder_and_refuses_another_encoder(tmp_path):
    """``after release --decoder-from``: the released codec has the new decoder and the run's encoder;
    a codec whose encoder differs (latents the diffusion model never saw) is refused."""
    from after.errors import BadInputError
    from after.train.run import CONFIG_KEY, RunFolder, load_checkpoint

    bundle, run_dir = make_runs(tmp_path)
    codec_run = RunFolder(tmp_path / "codec")
    checkpoint = load_checkpoint(codec_run.latest_checkpoint())

    def codec_copy(name, changed_prefix):
        state = dict(checkpoint["state_dict"])
        prefix = f"codec.{changed_prefix}"
        key = next(k for k in state if k.startswith(prefix) and state[k].is_floating_point())
        state[key] = state[key] + 0.01
        folder = RunFolder(tmp_path / name)
        folder.save_config(checkpoint[CONFIG_KEY])
        folder.checkpoint_dir.mkdir(parents=True)
        torch.save({"state_dict": state, CONFIG_KEY: checkpoint[CONFIG_KEY]}, folder.checkpoint_path(1))
        return folder.path, key[len("codec.") :]

    tuned, changed = codec_copy("tuned", "decoder.")
    out = bundle_module.release_run(run_dir, tmp_path / "released", map_steps=5, decoder_from=tuned)
    released = load_bundle(out).codec.state_dict()
    original = bundle.codec.state_dict()
    for key, value in released.items():
        expected = original[key] + 0.01 if key == changed else original[key]
        torch.testing.assert_close(value, expected)

    other, changed = codec_copy("other", "encoder.")
    with pytest.raises(BadInputError, match=rf"other: its encoder differs .*{changed}"):
        bundle_module.release_run(run_dir, tmp_path / "refused", map_steps=5, decoder_from=other)
    missing = tmp_path / "missing"
    with pytest.raises(BadInputError, match=r"--decoder-from: .*missing: codec not found"):
        bundle_module.release_run(run_dir, tmp_path / "refused", map_steps=5, decoder_from=missing)
    assert not (tmp_path / "refused").exists()


def test_release_takes_the_oscillator_bank_of_a_decoder_trained_alone(tmp_path):
    """``--decoder-from`` a codec that gained an oscillator bank (``train-codec --decoder-only
    --oscillators``): the released codec has the bank, its config says so, and the encoder (so the
    diffusion model's latents) is the run's own."""
    from after.codec.model import Codec
    from after.train.run import CONFIG_KEY, RunFolder, load_checkpoint

    bundle, run_dir = make_runs(tmp_path)
    checkpoint = load_checkpoint(RunFolder(tmp_path / "codec").latest_checkpoint())
    config = dict(checkpoint[CONFIG_KEY])
    config["codec"] = {**config["codec"], "oscillators": 60, "oscillators_per_octave": 12}
    codec = Codec.from_config(from_dict(CodecConfig, config["codec"]))
    old = {k[len("codec.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("codec.")}
    codec.load_state_dict(old, strict=False)
    with torch.no_grad():
        codec.decoder.oscillators.head[-1].conv.bias.add_(0.2)  # the bank is heard
    folder = RunFolder(tmp_path / "banked")
    folder.save_config(config)
    folder.checkpoint_dir.mkdir(parents=True)
    state = {f"codec.{k}": v for k, v in codec.state_dict().items()}
    torch.save({"state_dict": state, CONFIG_KEY: config}, folder.checkpoint_path(1))

    out = bundle_module.release_run(run_dir, tmp_path / "released", map_steps=5, decoder_from=folder.path)
    released = load_bundle(out)
    assert released.codec_config.oscillators == 60 and released.codec.has_oscillators
    mine = released.codec.state_dict()
    for key, value in bundle.codec.state_dict().items():
        if not key.startswith("decoder."):
            torch.testing.assert_close(mine[key], value)
    audio = 0.1 * torch.randn(1, 1, 4 * released.hop)
    with torch.no_grad():
        torch.testing.assert_close(released.codec.encode(audio), bundle.codec.encode(audio))
        z = released.codec.encode(audio)
        torch.testing.assert_close(released.codec.decode(z), codec.eval().decode(z), rtol=0, atol=2e-3)


def test_a_released_models_codec_serves_encode_training_release_and_export(released, tmp_path, monkeypatch):
    """Fine-tuning a released model on other sounds starts from its codec: ``load_codec`` takes the
    model folder or a packaged name (the run config then stores the folder, not the bare name), a
    diffusion run trained on it loads and releases with that codec unchanged, and export-codec takes
    it too."""
    from after.codec.load import load_codec
    from after.export.codec_export import export_codec
    from after.runtime.bundle import codec_config_of
    from after.train.diffusion_config import train_preset
    from after.train.diffusion_run import codec_section, diffusion_run_config
    from after.train.run import CONFIG_KEY, RunFolder

    bundle, folder = released
    models = tmp_path / "models"
    models.mkdir()
    copy_folder(folder, models / "packaged")
    monkeypatch.setattr(bundle_module, "models_dir", lambda: models)
    monkeypatch.chdir(tmp_path)
    handle = load_codec("packaged")
    assert handle.kind == "model" and handle.source == models / "packaged"
    # named by the content of codec.safetensors alone, so models that ship the same codec share latents
    assert handle.codec_id == load_codec(folder).codec_id and handle.codec_id.startswith("codec-")
    assert codec_config_of(handle) == bundle.codec_config
    audio = torch.from_numpy(np.sin(np.arange(4096) / 7.0).astype(np.float32) * 0.3).view(1, 1, -1)
    with torch.no_grad():
        torch.testing.assert_close(handle.encode(audio), bundle.codec.encode(audio))
    section = codec_section(handle, "packaged")
    assert section["path"] == str(models / "packaged")

    run = RunFolder(tmp_path / "finetune")
    run.save_config(diffusion_run_config("tiny", bundle.diffusion_config, train_preset("tiny"), {"path": "-"},
                                         section))  # fmt: skip
    run.checkpoint_dir.mkdir(parents=True)
    state = {f"ema.module.{k}": v for k, v in bundle.model.state_dict().items()}
    torch.save({"state_dict": state, CONFIG_KEY: run.load_config()}, run.checkpoint_path(3))
    loaded = load_bundle(run.path)
    assert loaded.codec_config == bundle.codec_config
    again = load_bundle(release_bundle(loaded, tmp_path / "released"))
    for key, value in bundle.codec.state_dict().items():
        torch.testing.assert_close(again.codec.state_dict()[key], value)

    assert export_codec("packaged", tmp_path / "codec.ts").is_file()
    with pytest.raises(ModelFileError, match=r"codec not found.*released model folder"):
        load_codec(tmp_path / "missing")


def test_init_from_accepts_a_model_whose_sampling_settings_were_tuned(released, tmp_path):
    """A released model's tuned guidance and steps are not architecture: ``--init-from`` takes it into a
    run of the plain preset, while a real architecture difference is still refused."""
    import dataclasses

    from after.diffusion.model import build_model
    from after.errors import BadInputError
    from after.train.diffusion_config import train_preset
    from after.train.diffusion_module import DiffusionModule
    from after.train.diffusion_run import initialise_diffusion

    bundle, _ = released
    tuned = load_bundle(released[1])
    tuned.diffusion_config = dataclasses.replace(
        tuned.diffusion_config, guidance_timbre=1.5, guidance_structure=2.0, n_steps=6
    )
    folder = release_bundle(tuned, tmp_path / "tuned")
    config = bundle.diffusion_config
    module = DiffusionModule(build_model(config), config, train_preset("tiny"))
    initialise_diffusion(module, bundle.diffusion_config, folder)
    for key, value in bundle.model.state_dict().items():
        torch.testing.assert_close(module.model.state_dict()[key], value)
    other = dataclasses.replace(bundle.diffusion_config, timbre_dim=bundle.diffusion_config.timbre_dim + 1)
    with pytest.raises(BadInputError, match="timbre_dim"):
        initialise_diffusion(module, other, folder)


def test_two_models_share_one_codec_file(released, tmp_path, monkeypatch):
    from after.errors import BadInputError
    from after.runtime.bundle import CODEC_FILE, share_codec

    bundle, folder = released
    (tmp_path / "models").mkdir()
    owner = copy_folder(folder, tmp_path / "models" / "audio")
    sharer = copy_folder(folder, tmp_path / "models" / "midi")
    assert share_codec(sharer, owner) == owner / CODEC_FILE
    description = json.loads((sharer / MODEL_FILE).read_text())
    assert not (sharer / CODEC_FILE).exists()
    assert (description["codec_file"], description["format_version"]) == ("../audio/codec.safetensors", 2)
    loaded = load_bundle(sharer)
    for key, value in bundle.codec.state_dict().items():
        assert torch.equal(loaded.codec.state_dict()[key], value)

    # the shared file is still pinned by the sha256 in the sharer's model.json
    data = bytearray((owner / CODEC_FILE).read_bytes())
    (owner / CODEC_FILE).write_bytes(bytes(data[:-1]) + bytes([data[-1] ^ 1]))
    with pytest.raises(ModelFileError, match=r"audio/codec\.safetensors: sha256 .* does not match"):
        load_bundle(sharer)
    (owner / CODEC_FILE).write_bytes(bytes(data))

    # copied away from its owner: found among the packaged models by sha256, else a clear refusal
    alone = copy_folder(sharer, tmp_path / "alone")
    monkeypatch.setattr(bundle_module, "models_dir", lambda: tmp_path / "models")
    assert load_bundle(alone).codec_config == bundle.codec_config
    monkeypatch.setattr(bundle_module, "models_dir", lambda: tmp_path / "nothing-here")
    (tmp_path / "nothing-here").mkdir()
    with pytest.raises(
        ModelFileError, match=r"shares the codec file \.\./audio/codec\.safetensors, which is missing"
    ):
        load_bundle(alone)

    # only byte-identical codecs can be shared; a path that is not a relative .safetensors is refused
    other = random_bundle(codec_preset("tiny"), diffusion_preset("tiny"), seed=3, name="other")
    different = release_bundle(other, tmp_path / "different")
    with pytest.raises(BadInputError, match="only models trained on the same codec can share it"):
        share_codec(different, owner)
    assert (different / CODEC_FILE).is_file()  # nothing removed on refusal
    with pytest.raises(BadInputError, match="cannot share the codec with itself"):
        share_codec(owner, owner)
    with pytest.raises(BadInputError, match="shares its codec itself"):
        share_codec(different, sharer)
    for bad in ("/etc/codec.safetensors", "../audio/codec.pt", 3):
        description["codec_file"] = bad
        (alone / MODEL_FILE).write_text(json.dumps(description))
        with pytest.raises(ModelFileError, match=r"codec_file .*expected a relative path"):
            load_bundle(alone)
    description["codec_file"], description["format_version"] = "../audio/codec.safetensors", 1
    (alone / MODEL_FILE).write_text(json.dumps(description))
    with pytest.raises(ModelFileError, match="codec_file needs format_version 2"):
        load_bundle(alone)


def test_release_refuses_a_share_codec_with_that_is_no_model(tmp_path):
    from after.errors import BadInputError
    from after.runtime.bundle import release_run

    with pytest.raises(BadInputError, match=r"--share-codec-with .*nowhere: not a released model folder"):
        release_run(tmp_path / "run", tmp_path / "out", share_codec_with=tmp_path / "nowhere")
    assert not (tmp_path / "out").exists()
