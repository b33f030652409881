"""Test helpers: a codec run folder (random tiny codec) without training."""

from pathlib import Path

import torch

from after.codec.config import codec_preset
from after.codec.model import Codec
from after.config import to_dict
from after.train.codec_module import codec_run_config, codec_training_preset
from after.train.run import CONFIG_KEY, RunFolder


def make_codec_run(folder: Path, seed: int = 0, step: int = 1) -> RunFolder:
    """Write a run folder whose checkpoint holds a seeded random tiny codec."""
    torch.manual_seed(seed)
    config = codec_run_config(
        "tiny", to_dict(codec_preset("tiny")), codec_training_preset("tiny"), {"path": "none"}
    )
    codec = Codec.from_config(codec_preset("tiny"))
    run = RunFolder(folder)
    run.save_config(config)
    run.checkpoint_dir.mkdir(parents=True)
    state = {f"codec.{k}": v for k, v in codec.state_dict().items()}
    torch.save({"state_dict": state, CONFIG_KEY: config, "global_step": step}, run.checkpoint_path(step))
    return run
