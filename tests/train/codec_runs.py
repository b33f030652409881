"""Shared helpers for codec-training tests: tiny configs, synthetic data, quiet trainer options."""

from after.codec.config import codec_preset
from after.config import to_dict
from after.train.audio_data import SyntheticAudioDataset
from after.train.codec_module import codec_run_config, codec_training_preset, training_config_with
from after.train.run import TrainerOptions

SAMPLE_RATE = codec_preset("tiny").sample_rate


def tiny_run_config(**training_changes) -> dict:
    """Run config of the tiny codec with short crops (8192 samples = 8 latent frames)."""
    changes = {"crop_samples": 8192, "batch_size": 4, **training_changes}
    training = training_config_with(codec_training_preset("tiny"), **changes)
    return codec_run_config("tiny", to_dict(codec_preset("tiny")), training, {"path": "synthetic"})


def synthetic_sets(items: int = 16, samples: int = 8192):
    return (
        SyntheticAudioDataset(items, samples, SAMPLE_RATE, seed=0),
        SyntheticAudioDataset(4, samples, SAMPLE_RATE, seed=1),
    )


def quiet_options(**changes) -> TrainerOptions:
    base = dict(
        accelerator="cpu",
        progress_bar=False,
        checkpoint_every=1000,
        val_every=1000,
        val_batches=1,
        log_every=1,
    )
    return TrainerOptions(**{**base, **changes})
