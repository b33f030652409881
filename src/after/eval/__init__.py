"""after.eval."""
