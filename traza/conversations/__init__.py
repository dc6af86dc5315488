"""Conversation records: lookups, turns, handoffs and resumes (the service layer)."""
