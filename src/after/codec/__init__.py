"""after.codec."""
