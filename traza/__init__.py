"""traza: WhatsApp conversation orchestrator with decision-level traceability."""

__version__ = "0.1.0"
