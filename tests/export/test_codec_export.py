"""Codec export: the nn~ check passes, the file matches eager code offline and block by block."""

import pytest
import torch
from codec_files import make_codec_run

from after.cli.main import main
from after.codec.load import load_codec
from after.errors import ModelFileError
from after.export.check import check_export
from after.export.codec_export import ExportedCodec, export_codec
from after.nn.streaming import reset_state

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_codec_run(tmp_path_factory.mktemp("codec_run")).path


@pytest.fixture(scope="module")
def streaming_file(run_dir, tmp_path_factory):
    return export_codec(run_dir, tmp_path_factory.mktemp("export") / "codec.ts", streaming=True)


def music(samples: int, seed: int = 0) -> torch.Tensor:
    """[1, 1, samples] of a few sines and noise."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 22050
    tone = sum(torch.sin(2 * torch.pi * f * t) for f in (220.0, 331.0, 557.0)) * 0.2
    return (tone + 0.05 * torch.randn(samples, generator=generator)).reshape(1, 1, samples)  # [1, 1, T]


def test_exported_file_passes_the_nn_tilde_check(streaming_file):
    assert check_export(streaming_file, audio=music(3 * 4096).reshape(-1)) == []


def test_params_buffers_and_ratios(streaming_file):
    model = torch.jit.load(str(streaming_file))
    hop, dim = 1024, 16
    assert model.get_methods() == ["encode", "decode", "forward"]
    assert model.encode_params.tolist() == [1, 1, dim, hop]
    assert model.decode_params.tolist() == [dim, hop, 1, 1]
    assert model.forward_params.tolist() == [1, 1, 1, 1]
    assert model.get_sample_rate() == 22050
    with torch.inference_mode():
        for batch in (1, 4):
            z = model.encode(torch.zeros(batch, 1, 4096))
            assert z.shape == (batch, dim, 4096 // hop)
            assert model.decode(z).shape == (batch, 1, 4096)
            assert model.forward(torch.zeros(batch, 1, 4096)).shape == (batch, 1, 4096)


def test_streaming_file_equals_eager_and_offline(run_dir, streaming_file):
    eager = ExportedCodec(load_codec(run_dir).module, streaming=True)
    scripted = torch.jit.load(str(streaming_file))
    audio = music(8 * 2048, seed=1)
    with torch.inference_mode():
        blocks = [audio[..., i : i + 2048] for i in range(0, audio.shape[-1], 2048)]
        from_file = torch.cat([scripted(block) for block in blocks], dim=-1)
        from_eager = torch.cat([eager(block) for block in blocks], dim=-1)
        reset_state(eager.codec)
        offline = eager(audio)
    assert torch.allclose(from_file, from_eager, atol=1e-5)
    assert torch.allclose(from_file, offline, atol=1e-4)
    assert from_file.abs().max() > 0


def test_offline_file_processes_every_call_from_silence(run_dir, tmp_path):
    path = export_codec(run_dir, tmp_path / "offline.ts", streaming=False)
    model = torch.jit.load(str(path))
    audio = music(4096, seed=2)
    with torch.inference_mode():
        first, second = model.encode(audio), model.encode(audio)
        eager = load_codec(run_dir).module.encode(audio)
    assert torch.equal(first, second)
    assert torch.allclose(first, eager, atol=1e-5)
    assert not model.is_streaming


def test_export_cli_and_bad_source(run_dir, tmp_path):
    assert main(["export-codec", str(run_dir), "--out", str(tmp_path / "c.ts"), "--offline"]) == 0
    assert check_export(tmp_path / "c.ts") == []
    with pytest.raises(ModelFileError, match="export needs a run folder"):
        export_codec(tmp_path / "c.ts", tmp_path / "again.ts")
    assert main(["export-codec", str(tmp_path / "missing"), "--out", str(tmp_path / "x.ts")]) == 2


class RaveLike(torch.nn.Module):
    """A RAVE-style stand-in: 4 latent channels per 64 samples, an ``sr`` attribute, no nn~ buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.sr = 16000
        self.mix = torch.nn.Linear(64, 4)
        self.unmix = torch.nn.Linear(4, 64)

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.reshape(x.shape[0], -1, 64)  # [B, 1, T] -> [B, T/64, 64]
        return self.mix(frames).transpose(1, 2)  # [B, 4, T/64]

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        frames = self.unmix(z.transpose(1, 2))  # [B, L, 64]
        return frames.reshape(z.shape[0], 1, -1)  # [B, 1, L*64]


def test_load_codec_accepts_a_rave_like_torchscript_file(tmp_path):
    torch.jit.script(RaveLike()).save(str(tmp_path / "rave.ts"))
    handle = load_codec(tmp_path / "rave.ts")
    assert (handle.hop, handle.latent_dim, handle.sample_rate, handle.kind) == (64, 4, 16000, "torchscript")
    audio = music(1000)
    z = handle.encode(audio)
    assert z.shape == (1, 4, 16)  # 1000 samples padded to 1024
    assert handle.decode(z).shape == (1, 1, 1024)


def test_load_codec_reads_our_files_consistently(run_dir, tmp_path):
    from_run = load_codec(run_dir)
    from_file = load_codec(export_codec(run_dir, tmp_path / "offline.ts", streaming=False))
    assert (from_file.hop, from_file.latent_dim, from_file.sample_rate) == (1024, 16, 22050)
    assert from_run.info() == from_file.info()
    assert from_file.latency == from_run.latency == from_run.module.latency
    audio = music(4096, seed=3)
    assert torch.allclose(from_run.encode(audio), from_file.encode(audio), atol=1e-5)
    assert from_run.codec_id != from_file.codec_id and from_run.codec_id.startswith(run_dir.name)


def test_load_codec_refuses_what_is_not_a_codec(tmp_path):
    torch.jit.script(torch.nn.Identity()).save(str(tmp_path / "identity.ts"))
    with pytest.raises(
        ModelFileError,
        match=r"identity.ts: TorchScript file is not a codec: it has no encode\(\) and no decode\(\)",
    ):
        load_codec(tmp_path / "identity.ts")
    (tmp_path / "random.bin").write_bytes(torch.randn(100).numpy().tobytes())
    with pytest.raises(ModelFileError, match=r"random\.bin: not a codec"):
        load_codec(tmp_path / "random.bin")
    with pytest.raises(ModelFileError, match="codec not found"):
        load_codec(tmp_path / "nothing")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(ModelFileError, match="holds no checkpoint"):
        load_codec(tmp_path / "empty_run")


def test_load_codec_refuses_a_codec_without_sample_rate(tmp_path):
    module = RaveLike()
    del module.sr
    torch.jit.script(module).save(str(tmp_path / "no_rate.ts"))
    with pytest.raises(ModelFileError, match="does not say its sample rate"):
        load_codec(tmp_path / "no_rate.ts")
    assert load_codec(tmp_path / "no_rate.ts", sample_rate=8000).sample_rate == 8000


def test_checkpoint_of_another_kind_is_refused(tmp_path):
    from after.train.run import CONFIG_KEY

    (tmp_path / "checkpoints").mkdir()
    torch.save(
        {"state_dict": {}, CONFIG_KEY: {"kind": "diffusion"}}, tmp_path / "checkpoints" / "step00000001.ckpt"
    )
    with pytest.raises(ModelFileError, match="not a codec run"):
        load_codec(tmp_path)
