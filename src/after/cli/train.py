"""``after train``: train the diffusion model (timbre + structure encoders, denoiser) on codec latents."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, help="dataset folder with latents of --codec (`after encode`)"
    )
    parser.add_argument(
        "--codec",
        required=True,
        help="codec run folder, checkpoint, released model (e.g. default) or TorchScript file (.ts)",
    )
    parser.add_argument(
        "--preset", default="tiny", help="model and training preset: base, midi, tiny, tiny_midi"
    )
    parser.add_argument("--out", required=True, help="run folder (config, checkpoints, TensorBoard logs)")
    parser.add_argument(
        "--max-steps", type=int, default=1_000_000, help="stop after this many training steps"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="examples per step and device")
    parser.add_argument("--crop-frames", type=int, default=None, help="latent frames per training example")
    parser.add_argument("--lr", type=float, default=None, help="learning rate of the encoders and denoiser")
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
        help="start a new run from the model of this run folder, checkpoint or released model (fine-tuning)",
    )
    parser.add_argument(
        "--init-timbre-from",
        default=None,
        help="start a new run with the timbre encoder of this run or released model (audio or MIDI), "
        "e.g. an audio model from the timbre encoder of a trained MIDI model",
    )
    parser.add_argument("--checkpoint-every", type=int, default=None, help="write a checkpoint every N steps")
    parser.add_argument("--val-every", type=int, default=None, help="validate (probe, audio) every N steps")
    parser.add_argument("--phase1-steps", type=int, default=None, help="length of the timbre-only phase")
    parser.add_argument(
        "--structure-twins",
        type=float,
        default=None,
        metavar="P",
        help="audio mode: probability that an example's structure is its chunk's twin (the same notes "
        "played by another instrument; make them with `after encode --twins`)",
    )
    parser.add_argument(
        "--train-timbre-encoder",
        action="store_true",
        help="audio mode: keep training the timbre encoder in phase 2 instead of freezing it "
        "(sensible with --structure-twins)",
    )
    parser.add_argument("--workers", type=int, default=None, help="DataLoader worker processes")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from after.train.diffusion_run import train_diffusion
    from after.train.run import TrainerOptions, train_strategy

    changes = {
        "batch_size": args.batch_size,
        "crop_frames": args.crop_frames,
        "learning_rate": args.lr,
        "checkpoint_every": args.checkpoint_every,
        "val_every": args.val_every,
        "phase1_steps": args.phase1_steps,
        "num_workers": args.workers,
        "structure_twins": args.structure_twins,
        "freeze_timbre": False if args.train_timbre_encoder else None,
    }
    options = TrainerOptions(
        max_steps=args.max_steps,
        devices=int(args.devices) if args.devices.isdigit() else args.devices,
        accelerator=args.accelerator,
        strategy=train_strategy(args.strategy),
        num_nodes=args.num_nodes,
        progress_bar=not args.no_progress,
    )
    interrupted = train_diffusion(
        args.out,
        args.data,
        args.codec,
        args.preset,
        changes,
        options,
        resume=args.resume,
        init_from=args.init_from,
        init_timbre_from=args.init_timbre_from,
    )
    return 130 if interrupted else 0
