"""Codec: streaming equals offline, block causality, bounded latent, TorchScript, presets, training."""

import dataclasses
import io

import pytest
import torch

from after.codec.config import PRESETS, CodecConfig, codec_preset
from after.codec.model import Bottleneck, Codec
from after.errors import BadInputError
from after.nn.conv import remove_weight_norm
from after.nn.streaming import get_state, init_state, reset_state, set_state, streaming

# smaller than the tiny preset so that the whole file stays fast; same structure
MINI = dataclasses.replace(codec_preset("tiny"), channels=4, latent_dim=8, strides=(2, 4, 4))


def make_codec(config: CodecConfig = MINI, seed: int = 0) -> Codec:
    torch.manual_seed(seed)
    return Codec.from_config(config).eval()


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> None:
    assert actual.shape == expected.shape
    scale = expected.abs().max().clamp_min(1e-12)
    assert ((actual - expected).abs().max() / scale).item() < rel


def stream(fn, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Call ``fn`` on consecutive blocks of ``x`` (last block takes the rest) and concatenate."""
    outputs, start = [], 0
    for size in [*sizes, x.size(-1)]:
        outputs.append(fn(x[..., start : start + size]))
        start += size
    return torch.cat(outputs, dim=-1)


@pytest.fixture(scope="module")
def codec() -> Codec:
    return make_codec()


@pytest.fixture(scope="module")
def audio() -> torch.Tensor:
    torch.manual_seed(1)
    return 0.5 * torch.randn(2, 1, 8 * MINI.hop)


def test_shapes_and_attributes(codec, audio):
    with torch.no_grad():
        z = codec.encode(audio)
        y = codec.decode(z)
    assert codec.hop == MINI.hop == 512
    assert z.shape == (2, MINI.latent_dim, 8) and y.shape == audio.shape
    assert codec.latency == codec.encoder_latency + codec.decoder_latency == codec.pqmf.latency > 0
    assert codec.sample_rate == MINI.sample_rate and codec.latent_dim == MINI.latent_dim


@pytest.mark.parametrize("hops", [1, 2, 4])
def test_streaming_encode_decode_equal_offline_in_blocks_of_hops(codec, audio, hops):
    block = hops * codec.hop
    with torch.no_grad():
        z = codec.encode(audio)
        y = codec.decode(z)
        assert_close(codec(audio)[0], y)
        with streaming(codec, 2):
            assert_close(stream(codec.encode, audio, [block] * (8 // hops)), z)
        with streaming(codec, 2):
            assert_close(stream(codec.decode, z, [hops] * (8 // hops)), y)
        with streaming(codec, 2):  # full codec, block in -> block out
            full = stream(lambda b: codec.decode(codec.encode(b)), audio, [block] * (8 // hops))
            assert_close(full, y)


def test_streaming_with_uneven_blocks_equals_offline(codec, audio):
    with torch.no_grad():
        z = codec.encode(audio)
        y = codec.decode(z)
        with streaming(codec, 2):
            assert_close(stream(codec.encode, audio, [1, 700, 0, 33, 512, 1500, 3]), z)
        with streaming(codec, 2):
            assert_close(stream(codec.decode, z, [1, 0, 3, 1, 2]), y)
        with streaming(codec, 2):
            full = stream(lambda b: codec.decode(codec.encode(b)), audio, [100, 1000, 7, 2000, 513])
            assert_close(full, y)


def test_state_snapshot_and_restore_replays_the_same_output(codec, audio):
    with torch.no_grad(), streaming(codec, 2):
        codec.encode(audio[..., :1000])
        snapshot = get_state(codec)
        first = codec.encode(audio[..., 1000:3000])
        set_state(codec, snapshot)
        assert torch.equal(codec.encode(audio[..., 1000:3000]), first)


def test_codec_is_block_causal(codec, audio):
    tau = 3 * codec.hop + 200
    changed = audio.clone()
    changed[..., tau:] = torch.randn_like(changed[..., tau:])
    with torch.no_grad():
        z, z_changed = codec.encode(audio), codec.encode(changed)
        y, y_changed = codec(audio)[0], codec(changed)[0]
        frames = tau // codec.hop
        assert torch.equal(z[..., :frames], z_changed[..., :frames])
        assert not torch.equal(z[..., frames], z_changed[..., frames])
        assert torch.equal(y[..., : frames * codec.hop], y_changed[..., : frames * codec.hop])
        z_later = z.clone()
        z_later[..., 5:] += 1.0
        decoded, decoded_later = codec.decode(z), codec.decode(z_later)
        assert torch.equal(decoded[..., : 5 * codec.hop], decoded_later[..., : 5 * codec.hop])
        assert not torch.equal(decoded[..., 5 * codec.hop :], decoded_later[..., 5 * codec.hop :])


def test_tanh_bottleneck_bounds_the_latent_and_box_regulariser_grows_outside():
    tanh = Bottleneck("tanh", scale=3.0)
    z, regulariser = tanh(torch.tensor([[[-100.0, 0.5, 100.0]]]))
    assert z.abs().max() <= 3.0 and z[0, 0, 1] == pytest.approx(3 * torch.tanh(torch.tensor(0.5 / 3)))
    assert regulariser > 10
    box = Bottleneck("box", scale=3.0)
    centre, inside, outside = (box(torch.full((1, 1, 4), value))[1] for value in (0.0, 2.0, 5.0))
    assert 0 <= centre < 0.1 and centre < inside < 1 and outside > 2
    noisy = Bottleneck("tanh", scale=3.0, noise=0.1)
    x = torch.zeros(1, 4, 100)
    assert torch.equal(noisy.eval()(x)[0], x)  # no noise at inference
    assert noisy.train()(x)[0].std() > 0.05
    with pytest.raises(ValueError, match="bottleneck"):
        Bottleneck("relu", 1.0)


def test_script_save_load_matches_eager_offline_and_streaming_with_batch_change(tmp_path):
    codec = make_codec(seed=3)
    remove_weight_norm(codec)
    torch.manual_seed(4)
    audio = 0.5 * torch.randn(4, 1, 6 * codec.hop)
    with torch.no_grad():
        z = codec.encode(audio)
        y = codec.decode(z)
        path = tmp_path / "codec.ts"
        torch.jit.save(torch.jit.script(codec), str(path))
        offline = torch.jit.load(str(path))
        assert_close(offline.encode(audio), z)
        assert_close(offline.decode(z), y)

        init_state(codec, 1)
        scripted = torch.jit.script(codec)
        reset_state(codec)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        buffer.seek(0)
        live = torch.jit.load(buffer)
        one = stream(lambda b: live.decode(live.encode(b)), audio[:1], [codec.hop] * 6)
        assert_close(one, y[:1])
        four = stream(lambda b: live.decode(live.encode(b)), audio, [codec.hop] * 6)
        assert_close(four, y)


def test_training_reduces_the_reconstruction_error():
    config = dataclasses.replace(MINI, n_bands=1, strides=(4, 4, 4), bottleneck="box", loudness=False)
    codec = make_codec(config, seed=5).train()
    t = torch.arange(4 * codec.hop) / config.sample_rate
    audio = (0.5 * torch.sin(2 * torch.pi * 220 * t)).view(1, 1, -1)
    target = codec.reconstruction_target(audio)
    optimiser = torch.optim.Adam(codec.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        reconstruction, _, regulariser = codec(audio)
        loss = (reconstruction - target).abs().mean() + 0.1 * regulariser
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < 0.6 * losses[0]


def test_reconstruction_target_is_the_input_delayed_by_the_latency(codec, audio):
    target = codec.reconstruction_target(audio[..., :1000])
    assert target.shape == (2, 1, 512)
    assert torch.equal(target[..., : codec.latency], torch.zeros(2, 1, codec.latency))
    assert torch.equal(target[..., codec.latency :], audio[..., : 512 - codec.latency])


def test_presets_and_errors():
    assert set(PRESETS) >= {"base", "small", "tiny"}
    for name in ("small", "tiny"):
        assert abs(codec_preset(name).frame_rate - 21.53) < 0.01
    with pytest.raises(BadInputError, match=r"'huge'.*base"):
        codec_preset("huge")
    with pytest.raises(BadInputError, match="multipliers"):
        CodecConfig(multipliers=(1, 2), strides=(2, 2))
    with pytest.raises(BadInputError, match="bottleneck"):
        CodecConfig(bottleneck="vq")


def test_base_preset_matches_the_original_size():
    config = codec_preset("base")
    assert config.hop == 2048 and config.sample_rate == 44100 and config.latent_dim == 64
    codec = Codec.from_config(config)
    encoder = sum(p.numel() for p in codec.encoder.parameters())
    decoder = sum(p.numel() for p in codec.decoder.parameters())
    # the original codec has 8.69 M encoder and 19.35 M decoder parameters
    assert 8.0e6 < encoder < 9.5e6 and 18.5e6 < decoder < 20.5e6
    assert codec.hop == 2048


@pytest.mark.slow
def test_base_preset_streams_like_offline():
    codec = Codec.from_config(codec_preset("base")).eval()
    audio = 0.5 * torch.randn(1, 1, 4 * codec.hop)
    with torch.no_grad():
        y = codec(audio)[0]
        with streaming(codec, 1):
            full = stream(lambda b: codec.decode(codec.encode(b)), audio, [codec.hop] * 4)
    assert_close(full, y)
