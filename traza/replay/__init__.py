"""Replay past conversations through today's graph, and travel through their checkpoints."""
