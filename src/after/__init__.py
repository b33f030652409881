"""after: real-time timbre and structure transfer with a streaming latent diffusion model."""

__version__ = "0.1.0"
