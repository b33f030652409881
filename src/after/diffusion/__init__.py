"""after.diffusion."""
