"""Released models with float16 storage: half the size, load back into float32 modules, still checked."""

import json

import pytest
import torch

from after.codec.config import codec_preset
from after.diffusion.config import diffusion_preset
from after.errors import ModelFileError
from after.runtime.bundle import (
    CODEC_FILE,
    DIFFUSION_FILE,
    MODEL_FILE,
    load_bundle,
    random_bundle,
    release_bundle,
)

torch.set_num_threads(1)


def test_fp16_release_loads_as_float32_with_rounded_weights(tmp_path):
    bundle = random_bundle(codec_preset("tiny"), diffusion_preset("tiny"), seed=3, name="half")
    full = release_bundle(bundle, tmp_path / "full")
    half = release_bundle(bundle, tmp_path / "half", fp16=True)
    for name in (CODEC_FILE, DIFFUSION_FILE):
        assert (half / name).stat().st_size < 0.6 * (full / name).stat().st_size
    assert json.loads((half / MODEL_FILE).read_text())["weights_dtype"] == "float16"
    loaded = load_bundle(half)
    for original, restored in ((bundle.codec, loaded.codec), (bundle.model, loaded.model)):
        expected = original.state_dict()
        for key, value in restored.state_dict().items():
            assert value.dtype == expected[key].dtype, key
            if value.is_floating_point():
                assert torch.equal(value, expected[key].half().to(value.dtype)), key
    x = torch.randn(1, 1, 4096) * 0.1
    with torch.no_grad():
        reference, rounded = bundle.codec.eval().encode(x), loaded.codec.encode(x)
    assert (reference - rounded).abs().max() < 1e-2 * reference.abs().max()


def test_fp16_release_is_still_sha256_checked(tmp_path):
    bundle = random_bundle(codec_preset("tiny"), diffusion_preset("tiny"), seed=3)
    folder = release_bundle(bundle, tmp_path / "half", fp16=True)
    data = bytearray((folder / CODEC_FILE).read_bytes())
    data[-1] ^= 0xFF
    (folder / CODEC_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256"):
        load_bundle(folder)
