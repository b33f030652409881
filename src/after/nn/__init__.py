"""after.nn."""
