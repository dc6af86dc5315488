"""Durable work on PostgreSQL with procrastinate: turns, deliveries, sweeps."""
