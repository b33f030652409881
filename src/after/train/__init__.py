"""after.train."""
