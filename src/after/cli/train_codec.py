"""``after train-codec``: train the streaming audio codec on a dataset folder."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder made by `after prepare`")
    parser.add_argument("--preset", default="tiny", help="codec and training preset: base, small, tiny")
    parser.add_argument("--out", required=True, help="run folder (config, checkpoints, TensorBoard logs)")
    parser.add_argument("--max-steps", type=int, default=100_000, help="stop after this many training steps")
    parser.add_argument("--batch-size", type=int, default=None, help="examples per step and device")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the preset's)")
    parser.add_argument(
        "--crop-samples",
        type=int,
        default=None,
        help="audio samples per training example",
    )
    parser.add_argument(
        "--adversarial-start",
        type=int,
        default=None,
        help="step at which the discriminator joins (default: the preset's)",
    )
    parser.add_argument(
        "--no-perceptual-weighting",
        action="store_true",
        help="compare spectra without the A-weighting filter (which weighs 60 Hz about 15 dB below "
        "1 kHz): keeps bass fundamentals in the loss",
    )
    parser.add_argument(
        "--stft-sizes",
        default=None,
        help="comma-separated FFT sizes of the multi-resolution STFT loss (default: the preset's); "
        "add 8192,4096 to hear partials 3-10 Hz apart, which frame-rate phase jumps smear",
    )
    parser.add_argument(
        "--log-frequency-weight",
        type=float,
        default=None,
        help="add, with this weight, a log-magnitude distance on 12 filters per octave from 32.7 Hz "
        "to the STFT loss (default: the preset's): bass and low notes weigh as much as the treble",
    )
    parser.add_argument("--devices", default="1", help="devices per node (a number, or 'auto')")
    parser.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--strategy", default="auto", help="'auto', or 'ddp' for several devices/nodes")
    parser.add_argument("--num-nodes", type=int, default=1, help="machines taking part (DDP)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its latest checkpoint"
    )
    parser.add_argument(
        "--init-from",
        default=None,
        help="start a new run from the codec of this run folder, checkpoint or released model (fine-tuning)",
    )
    parser.add_argument(
        "--decoder-only",
        action="store_true",
        help="train the decoder alone (needs --init-from): the encoder and its latents stay as they "
        "were, so diffusion models trained on them keep working (`after release --decoder-from`)",
    )
    parser.add_argument(
        "--oscillators",
        type=int,
        default=None,
        help="sinusoidal oscillators in the decoder (0 = none; default: the preset's): a stateful part "
        "that puts partials between the multiples of the frame rate; 336 covers 27.5 Hz to 3.5 kHz in "
        "quarter tones. Can be added to a trained codec with --decoder-only --init-from",
    )
    parser.add_argument(
        "--oscillator-weight",
        type=float,
        default=None,
        help="weight of the oscillator bank's own loss (spectral convergence of the bank alone at FFT "
        "sizes 8192 and 4096; default: the preset's, 1); 0 trains the bank through the "
        "reconstruction only",
    )
    parser.add_argument(
        "--oscillator-target",
        choices=("whole", "residual"),
        default=None,
        help="what the bank's own loss compares the bank with: the whole target, or the part of its "
        "spectrum the convolutional decoder does not play (default: the preset's, whole)",
    )
    parser.add_argument(
        "--fine-spectral-weight",
        type=float,
        default=None,
        help="weight of a pitch-precise term on the whole reconstruction: spectral convergence at FFT "
        "sizes 8192 and 4096 (default: the preset's, 0)",
    )
    parser.add_argument(
        "--checkpoint-every", type=int, default=5_000, help="write a checkpoint every N steps"
    )
    parser.add_argument("--val-every", type=int, default=2_000, help="validate (and log audio) every N steps")
    parser.add_argument(
        "--no-resample",
        action="store_true",
        help="refuse a dataset at another sample rate instead of resampling it on the fly",
    )
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def parse_fft_sizes(text: str) -> tuple[int, ...]:
    """``"8192,4096,2048"`` -> ``(8192, 4096, 2048)``; anything but powers of two from 16 up is refused."""
    from after.errors import BadInputError

    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError as error:
        raise BadInputError(f"--stft-sizes: expected comma-separated integers, got {text!r}") from error
    bad = [n for n in sizes if n < 16 or n & (n - 1)]
    if not sizes or bad:
        raise BadInputError(f"--stft-sizes: expected powers of two of at least 16, got {text!r}")
    return sizes


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from after.codec.config import codec_preset
    from after.config import require_non_negative, to_dict
    from after.train.codec_module import codec_run_config, codec_training_preset, training_config_with
    from after.train.run import TrainerOptions, train_strategy

    training = codec_training_preset(args.preset)
    overrides = {
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "crop_samples": args.crop_samples,
        "adversarial_start": args.adversarial_start,
        "log_frequency_weight": args.log_frequency_weight,
        "oscillator_weight": args.oscillator_weight,
        "oscillator_target": args.oscillator_target,
        "fine_spectral_weight": args.fine_spectral_weight,
    }
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if args.stft_sizes is not None:
        overrides["stft_sizes"] = parse_fft_sizes(args.stft_sizes)
    require_non_negative("--oscillator-weight", args.oscillator_weight)
    require_non_negative("--fine-spectral-weight", args.fine_spectral_weight)
    if args.no_perceptual_weighting:
        overrides["perceptual_weighting"] = False
    if args.decoder_only:
        if args.init_from is None and not args.resume:
            from after.errors import BadInputError

            raise BadInputError(
                "--decoder-only trains the decoder of an existing codec: give it with --init-from"
            )
        overrides["train_encoder"] = False
    if overrides:
        training = training_config_with(training, **overrides)
    data = {"path": str(Path(args.data).resolve()), "resample": not args.no_resample}
    codec_config = codec_preset(args.preset)
    if args.oscillators is not None:
        import dataclasses

        codec_config = dataclasses.replace(codec_config, oscillators=args.oscillators)
    config = codec_run_config(args.preset, to_dict(codec_config), training, data)
    options = TrainerOptions(
        max_steps=args.max_steps,
        checkpoint_every=args.checkpoint_every,
        val_every=args.val_every,
        devices=int(args.devices) if args.devices.isdigit() else args.devices,
        accelerator=args.accelerator,
        strategy=train_strategy(args.strategy),
        num_nodes=args.num_nodes,
        progress_bar=not args.no_progress,
    )
    from after.train.codec_module import train_codec

    interrupted = train_codec(
        args.out,
        config,
        options,
        resume=args.resume,
        num_workers=args.workers,
        init_from=args.init_from,
    )
    return 130 if interrupted else 0
