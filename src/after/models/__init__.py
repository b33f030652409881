"""after.models."""
