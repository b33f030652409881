"""Export a trained codec as an nn~ TorchScript file with RAVE's method names.

Methods (nn~ contract, see :mod:`after.export.nn_tilde`):

=========  ===========  ========  ============  =========
method     in channels  in ratio  out channels  out ratio
=========  ===========  ========  ============  =========
encode     1            1         D             hop
decode     D            hop       1             1
forward    1            1         1             1
=========  ===========  ========  ============  =========

A *streaming* export keeps each convolution's context between calls, so a file processed block by
block sounds exactly like the whole file processed at once (state is reset when the batch size
changes). An *offline* export processes every call from silence, as needed to encode independent
clips (dataset encoding). The file also exposes ``hop``, ``latent_dim``, ``latency`` (samples) and
``is_streaming`` as plain attributes.
"""

# No ``from __future__ import annotations``: TorchScript must see the class annotations as types.
import logging
from pathlib import Path

import torch
from torch import nn

from after.errors import ModelFileError
from after.export.nn_tilde import NnTildeModule
from after.nn.streaming import init_state

log = logging.getLogger(__name__)


class ExportedCodec(NnTildeModule):
    """nn~ wrapper of a codec (``encode``/``decode`` on ``[B,1,T]`` <-> ``[B,D,T/hop]``)."""

    hop: int
    latent_dim: int
    latency: int
    is_streaming: bool

    def __init__(self, codec: nn.Module, streaming: bool = True, test_buffer_size: int = 4096) -> None:
        from after.nn.conv import remove_weight_norm

        super().__init__(int(codec.sample_rate))
        self.codec = remove_weight_norm(codec).eval()
        self.hop = int(codec.hop)
        self.latent_dim = int(codec.latent_dim)
        self.latency = int(getattr(codec, "latency", 0))
        self.is_streaming = streaming
        buffer = max(test_buffer_size // self.hop, 1) * self.hop
        latent_labels = [f"(signal) latent {i}" for i in range(self.latent_dim)]
        self.reset()
        self.register_method(
            "encode", 1, 1, self.latent_dim, self.hop, ["(signal) audio in"], latent_labels, buffer
        )
        self.register_method(
            "decode", self.latent_dim, self.hop, 1, 1, latent_labels, ["(signal) audio out"], buffer
        )
        self.register_method("forward", 1, 1, 1, 1, ["(signal) audio in"], ["(signal) audio out"], buffer)
        self.reset()  # forget what the test calls left in the state

    @torch.jit.unused
    def reset(self, batch_size: int = 1) -> None:
        """Start from silence: fresh zero state (streaming) or offline mode."""
        if self.is_streaming:
            init_state(self.codec, batch_size)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio ``[B,1,T]`` -> reconstruction ``[B,1,T]`` (delayed by ``latency`` samples)."""
        return self.codec.decode(self.codec.encode(audio))

    @torch.jit.export
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio ``[B,1,T]`` -> latents ``[B,D,T/hop]``."""
        return self.codec.encode(audio)

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``[B,D,L]`` -> audio ``[B,1,L*hop]``."""
        return self.codec.decode(z)


def export_codec(source: str | Path, out: str | Path, streaming: bool = True) -> Path:
    """Export the codec of run folder / checkpoint ``source`` to the TorchScript file ``out``.

    The written file is loaded back and checked like nn~ would (:func:`after.export.check.check_export`);
    any problem raises :class:`ModelFileError` listing them.
    """
    from after.codec.load import load_codec
    from after.export.check import check_export

    handle = load_codec(source)
    if handle.kind not in ("run", "model"):
        raise ModelFileError(
            f"{source}: export needs a run folder, checkpoint or released model, not a {handle.kind} file"
        )
    out = Path(out)
    ExportedCodec(handle.module, streaming=streaming).export(out)
    problems = check_export(out)
    if problems:
        raise ModelFileError(f"{out}: exported file fails the nn~ check: " + "; ".join(problems))
    log.info(
        "%s: %s codec, hop %d, %d latent channels",
        out,
        "streaming" if streaming else "offline",
        handle.hop,
        handle.latent_dim,
    )
    return out
