"""Local stack runner: real servers as processes, no Docker (see stack/components.py)."""
