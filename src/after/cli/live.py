"""``after live``: run a streaming model in real time from a sound card, MIDI port and OSC.

Examples: ``after live --model M --input 2 --output 3`` (device indices, see ``--list-devices``),
``after live --model M --mode midi --midi-port "keyboard" --osc-port 9000``,
``after live --model M --input in.wav --output out.wav`` (same path, no hardware).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model name or path (default: the embedded default model)")
    parser.add_argument(
        "--mode", choices=("audio", "midi"), default="audio", help="structure from audio or MIDI"
    )
    parser.add_argument("--input", help="input device (index or name), audio file, or MIDI file (MIDI mode)")
    parser.add_argument(
        "--output", help="output device (index or name) or audio file (default: default device)"
    )
    parser.add_argument("--record", metavar="FILE", help="also write what is played into this audio file")
    parser.add_argument("--midi-port", help="MIDI port to listen to (default: open a virtual port 'after')")
    parser.add_argument("--midi-api", help="rtmidi API: UNIX_JACK, LINUX_ALSA, MACOSX_CORE, WINDOWS_MM")
    parser.add_argument("--osc-port", type=int, help="listen for /after/... OSC messages on this UDP port")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument("--realtime", action="store_true", help="file mode: run at the pace of real time")
    parser.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    parser.add_argument("--block-frames", type=int, metavar="K", help="latent frames generated per block")
    parser.add_argument("--voices", type=int, default=8, help="MIDI mode: polyphony (default 8)")
    parser.add_argument("--steps", type=int, help="sampling steps per block")
    parser.add_argument("--guidance-timbre", type=float, help="timbre guidance scale")
    parser.add_argument("--guidance-structure", type=float, help="structure guidance scale")
    parser.add_argument(
        "--safety-blocks", type=float, default=1.0, help="worker headroom in blocks (latency)"
    )
    parser.add_argument("--device-blocksize", type=int, default=0, help="frames per audio callback (0: auto)")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="int8 weights: 2-3x faster per block; output within 2-3 %% (relative L2) of fp32",
    )
    parser.add_argument(
        "--no-script",
        action="store_true",
        help="run the Python engine instead of the TorchScript one (slower; for debugging)",
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from after.runtime.live import LiveHost, list_devices, load_pipeline

    if args.list_devices:
        sys.stdout.write(list_devices() + "\n")
        return 0
    settings = {
        "block_frames": args.block_frames,
        "n_voices": args.voices,
        "steps": args.steps,
        "guidance_timbre": args.guidance_timbre,
        "guidance_structure": args.guidance_structure,
        "int8": args.int8,
        "scripted": not args.no_script,
    }
    pipeline = load_pipeline(args.model, args.mode, **{k: v for k, v in settings.items() if v is not None})
    host = LiveHost(
        pipeline,
        input=args.input,
        output=args.output,
        midi_port=args.midi_port,
        midi_api=args.midi_api,
        osc_port=args.osc_port,
        duration=args.duration,
        realtime=args.realtime,
        record=args.record,
        safety_blocks=args.safety_blocks,
        device_blocksize=args.device_blocksize,
    )
    host.run()
    return 0
