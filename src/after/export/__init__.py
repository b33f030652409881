"""after.export."""
