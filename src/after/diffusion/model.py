"""The AFTER diffusion model: timbre encoder + structure encoder (+ adversarial classifier) + denoiser.

Offline::

    model = build_model(diffusion_preset("tiny"))
    c = model.encode_timbre(z_ref)                 # [B, ZT]
    s = model.encode_structure(z_src)              # [B, ZS, L]  (MIDI mode: piano roll [B, 2, 128, L])
    z = model.sample(noise, c, s, n_steps=4, guidance_timbre=1.5, guidance_structure=1.0)

Streaming (chunks of P frames, P a multiple of ``model.chunk_size``)::

    model.start_stream(batch_size=B)               # empties the structure-encoder and KV caches
    for z_chunk, noise_chunk in ...:
        s_chunk = model.encode_structure(z_chunk)  # causal, stateful
        out = model.generate_chunk(noise_chunk, c, s_chunk, n_steps, g_t, g_s)
    model.stop_stream()

``generate_chunk`` and ``encode_structure`` are TorchScript-compatible (export wraps them).
"""

from collections.abc import Iterator

import torch
from torch import nn

from after.diffusion.config import DiffusionConfig
from after.diffusion.denoiser import Denoiser
from after.diffusion.encoders import (
    AdversarialClassifier,
    MidiStructureEncoder,
    StructureEncoder,
    TimbreEncoder,
)
from after.diffusion.guidance import DROP_VALUE
from after.diffusion.sampler import GuidedSampler
from after.nn.streaming import init_state, reset_state


class AfterModel(GuidedSampler):
    """Bundle of the diffusion model's networks with offline and streaming generation.

    Inherits the sampling methods of :class:`GuidedSampler` (``sample``, ``sample_chunk``,
    ``start_stream``, ``stop_stream``, ``guided_velocity``) and its attributes (``denoiser``, ``mode``,
    ``drop_value``, ``schedule``, ``chunk_size``).

    Args:
        timbre_encoder: ``[B, D, L] -> [B, ZT]``.
        structure_encoder: causal ``[B, D, L] -> [B, ZS, L]`` (audio) or roll ``-> [B, ZS, L]`` (MIDI).
        denoiser: the velocity network.
        classifier: adversarial classifier (audio mode) or ``None``.
        mode: ``"audio"`` or ``"midi"``.
        drop_value: constant standing for a dropped condition.
        schedule: sampling time grid.
    """

    def __init__(
        self,
        timbre_encoder: TimbreEncoder,
        structure_encoder: nn.Module,
        denoiser: Denoiser,
        classifier: AdversarialClassifier | None,
        mode: str = "audio",
        drop_value: float = DROP_VALUE,
        schedule: str = "uniform",
    ) -> None:
        super().__init__(denoiser, mode, drop_value, schedule)
        self.timbre_encoder = timbre_encoder
        self.structure_encoder = structure_encoder
        self.classifier = classifier

    @torch.jit.export
    def encode_timbre(self, z_ref: torch.Tensor) -> torch.Tensor:
        """Timbre vector ``c [B, ZT]`` of reference latents ``z_ref [B, D, L]``."""
        return self.timbre_encoder(z_ref)

    @torch.jit.export
    def encode_structure(self, source: torch.Tensor) -> torch.Tensor:
        """Structure ``s [B, ZS, L]`` from latents ``[B, D, L]`` (audio) or a roll (MIDI); causal and
        stateful while streaming."""
        return self.structure_encoder(source)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Velocity ``[B, D, L]`` (training): ``x [B, D, L]``, ``t [B]``, ``c [B, ZT]``, ``s [B, ZS, L]``."""
        return self.denoiser(x, t, c, s)

    @torch.jit.export
    def generate_chunk(
        self,
        noise: torch.Tensor,
        c: torch.Tensor,
        s: torch.Tensor,
        n_steps: int,
        guidance_timbre: float = 1.0,
        guidance_structure: float = 1.0,
    ) -> torch.Tensor:
        """Next chunk ``[B, D, P]`` of a stream (alias of :meth:`GuidedSampler.sample_chunk`)."""
        return self.sample_chunk(noise, c, s, n_steps, guidance_timbre, guidance_structure)

    @torch.jit.unused
    def generate_stream(
        self,
        noise: torch.Tensor,
        c: torch.Tensor,
        s: torch.Tensor,
        chunk_frames: int,
        n_steps: int = 4,
        guidance_timbre: float = 1.0,
        guidance_structure: float = 1.0,
    ) -> Iterator[torch.Tensor]:
        """Yield chunks of ``chunk_frames`` frames generated one after the other on a fresh stream of
        the denoiser (``noise [B, D, L]``, ``s [B, ZS, L]``; ``chunk_frames`` a multiple of K; a
        shorter last chunk must still be a multiple of K)."""
        if chunk_frames % self.chunk_size != 0 or noise.size(-1) % self.chunk_size != 0:
            raise ValueError(
                f"chunk_frames and the length must be multiples of the chunk size {self.chunk_size}"
            )
        init_state(self.denoiser, 3 * noise.size(0))
        try:
            for start in range(0, noise.size(-1), chunk_frames):
                stop = start + chunk_frames
                yield self.sample_chunk(
                    noise[:, :, start:stop],
                    c,
                    s[:, :, start:stop],
                    n_steps,
                    guidance_timbre,
                    guidance_structure,
                )
        finally:
            reset_state(self.denoiser)


def build_model(config: DiffusionConfig) -> AfterModel:
    """Modules for a :class:`DiffusionConfig` (weights freshly initialised)."""
    den = config.denoiser
    denoiser = Denoiser(
        latent_dim=config.latent_dim,
        timbre_dim=config.timbre_dim,
        structure_dim=config.structure_dim,
        dim=den.dim,
        n_layers=den.n_layers,
        n_heads=den.n_heads,
        mlp_ratio=den.mlp_ratio,
        chunk_size=den.chunk_size,
        window=den.window,
        max_steps=den.max_steps,
        time_dim=den.time_dim,
        structure_embed_dim=den.structure_embed_dim,
        rotary_dim=den.rotary_dim,
        zero_init=den.zero_init,
    )
    tim = config.timbre
    timbre = TimbreEncoder(
        config.latent_dim, config.timbre_dim, tim.channels, tim.dilations, tim.kernel_size, tim.se_dim,
        tim.attention_dim, tim.use_tanh,
    )  # fmt: skip
    classifier: AdversarialClassifier | None = None
    structure: nn.Module
    if config.mode == "audio":
        st = config.structure
        structure = StructureEncoder(
            config.latent_dim, config.structure_dim, st.channels, st.kernel_size, st.bound
        )
        classifier = AdversarialClassifier(
            config.structure_dim, config.timbre_dim, config.classifier.channels, config.classifier.kernel_size
        )
    else:
        mid = config.midi
        structure = MidiStructureEncoder(config.structure_dim, mid.channels, mid.kernel_size, mid.use_encoder)
    return AfterModel(
        timbre, structure, denoiser, classifier, config.mode, config.drop_value, config.sampling_schedule
    )
