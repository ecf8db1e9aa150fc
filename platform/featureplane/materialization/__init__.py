"""Materializing feature views: partitions, the window run, the online sync."""
