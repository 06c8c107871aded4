"""Small helpers shared by every part of medfleet (no heavy imports)."""
