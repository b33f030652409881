"""after.cli."""
