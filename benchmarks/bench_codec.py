"""Streaming speed of the codec presets on the CPU (batch 1, like a live host).

For each preset: parameters, algorithmic latency, and the median time to encode and to decode one
block (1 hop and 4 hops) in streaming mode, on 1 and 2 threads, eager and TorchScript; the
real-time factor (RTF) is (encode + decode time) / block duration.

    .venv/bin/python benchmarks/bench_codec.py [--presets tiny small base] [--runs 30] [--threads 1 2]
"""

import argparse
import statistics
import time

import torch

from after.codec.config import codec_preset
from after.codec.model import Codec
from after.nn.conv import remove_weight_norm
from after.nn.streaming import init_state, reset_state


def median_ms(fn, runs: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(codec: torch.nn.Module, hop: int, latent_dim: int, hops: int, runs: int) -> tuple[float, float]:
    audio = 0.1 * torch.randn(1, 1, hops * hop)
    z = torch.randn(1, latent_dim, hops)
    return median_ms(lambda: codec.encode(audio), runs), median_ms(lambda: codec.decode(z), runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "base"])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    args = parser.parse_args()
    print(
        "| preset | params (enc+dec) | hop | latency (samples / ms) | threads | mode | block | "
        "encode ms | decode ms | RTF |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.presets:
        config = codec_preset(name)
        codec = remove_weight_norm(Codec.from_config(config)).eval()
        params = sum(p.numel() for p in codec.encoder.parameters()) + sum(
            p.numel() for p in codec.decoder.parameters()
        )
        latency_ms = 1000 * codec.latency / config.sample_rate
        init_state(codec, 1)
        scripted = torch.jit.script(codec)
        for threads in args.threads:
            torch.set_num_threads(threads)
            for mode, model in (("eager", codec), ("script", scripted)):
                for hops in (1, 4):
                    with torch.inference_mode():
                        encode_ms, decode_ms = measure(model, config.hop, config.latent_dim, hops, args.runs)
                    block_ms = 1000 * hops * config.hop / config.sample_rate
                    rtf = (encode_ms + decode_ms) / block_ms
                    print(
                        f"| {name} | {params / 1e6:.2f} M | {config.hop} | "
                        f"{codec.latency} / {latency_ms:.1f} | "
                        f"{threads} | {mode} | {hops} hop ({block_ms:.1f} ms) | {encode_ms:.2f} | "
                        f"{decode_ms:.2f} | {rtf:.3f} |",
                        flush=True,
                    )
        reset_state(codec)


if __name__ == "__main__":
    main()
