"""The engine's rooms: intake (files into jobs), requests (creates and queries) and
results (downloads, the outbox, moves), over one shared `Context`. The runtime that drives
them lives in engine.py."""
