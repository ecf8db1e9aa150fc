"""Small utilities shared by every layer: local SQLite databases, file locks, AWS clients."""
