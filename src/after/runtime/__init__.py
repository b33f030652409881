"""after.runtime."""
