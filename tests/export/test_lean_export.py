"""Lean nn~ files: the weights once, no saved cache; int8 files; the loaded file still matches."""

import numpy as np
import pytest
import torch

from after.codec.config import codec_preset
from after.diffusion.config import diffusion_preset
from after.export.model_export import ExportedAfter
from after.runtime.bundle import random_bundle
from after.runtime.pipeline import AudioToAudioPipeline

HOP = 1024
VECTOR = [0.3, -0.2, 0.1, 0.5, -0.5, 0.0, 0.2, -0.1]
CODE_BYTES = 500_000
"""Scripted code, debug tables and pickled metadata of a file (about 0.3-0.45 MB, whatever the model)."""


def first_attention(model: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    return getattr(model.engine.model.denoiser.blocks, "0").attn


@pytest.fixture(scope="module")
def bundle():
    return random_bundle(codec_preset("tiny"), diffusion_preset("tiny"), seed=0)


@pytest.fixture(scope="module", params=[False, True], ids=["fp32", "int8"])
def exported(request, bundle, tmp_path_factory):
    module = ExportedAfter(bundle, chunk=1, int8=request.param)
    path = tmp_path_factory.mktemp("lean") / "model.ts"
    module.export(path)
    return request.param, module, path


def test_file_is_the_weights_plus_code(exported):
    _, module, path = exported
    weights = module.engine.weight_bytes()
    size = path.stat().st_size
    assert weights <= size <= 1.03 * weights + CODE_BYTES, (size, weights)
    attention = first_attention(torch.jit.load(str(path)))
    assert attention.k_cache.numel() == 0  # saved empty, allocated by the first call


def test_int8_file_is_a_third_of_the_fp32_one(bundle, tmp_path):
    sizes = {}
    for int8 in (False, True):
        path = tmp_path / f"{int8}.ts"
        ExportedAfter(bundle, chunk=1, int8=int8).export(path)
        sizes[int8] = path.stat().st_size
    assert sizes[True] < 0.55 * sizes[False]


def test_loaded_file_matches_the_pipeline_and_grows_its_caches(exported, bundle):
    int8, _, path = exported
    model = torch.jit.load(str(path))
    assert model.set_nb_steps(3) == 0 and model.set_guidance_timbre(1.5) == 0
    # the same block size on both sides: int8 layers quantise each call's input with its own scale
    pipeline = AudioToAudioPipeline(bundle, chunk=2, steps=3, guidance_timbre=1.5, int8=int8)
    pipeline.set_timbre_vector(VECTOR)
    rng = np.random.default_rng(0)
    x = (0.3 * np.sin(np.arange(8 * HOP) * 0.05) + 0.05 * rng.standard_normal(8 * HOP)).astype(np.float32)
    expected = pipeline.transfer_stream(x)[0]
    outputs = []
    for start in range(0, 8 * HOP, 2 * HOP):
        block = torch.zeros(1, 9, 2 * HOP)
        block[0, 0] = torch.from_numpy(x[start : start + 2 * HOP])
        block[0, 1:] = torch.tensor(VECTOR)[:, None]
        with torch.inference_mode():
            outputs.append(model.forward_manual(block)[0, 0])
    got = torch.cat(outputs).numpy()
    assert np.abs(expected).max() > 1e-3
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
    attention = first_attention(model)
    assert tuple(attention.k_cache.shape[:2]) == (3, 3)  # 3 steps x the guidance batch of one stream
    limit = model.max_steps
    assert model.set_nb_steps(limit + 1) == -1 and model.get_nb_steps() == 3
    assert model.set_nb_steps(limit) == 0
    with torch.inference_mode():
        out = model.forward_manual(torch.zeros(2, 9, HOP))  # batch change: caches re-allocated
    assert out.shape == (2, 1, HOP) and attention.k_cache.shape[:2] == (limit, 6)
