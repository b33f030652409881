"""after.data."""
