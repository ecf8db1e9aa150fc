"""Data for the example feature repository."""
