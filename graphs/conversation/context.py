"""Run-time knobs of a conversation run (`context_schema`), settable from Studio."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True)
class Context:
    """Per-run configuration; infrastructure settings live in `traza.settings`."""

    bot_name: str = "traza"
    """Who the bot is in the trace (`bot:<name>`)."""

    company: str = "nuestro equipo de talento"
    """How replies written by the model name the company."""

    use_llm: bool = True
    """Use the configured model when there is one; False forces the offline path."""

    llm_model: str | None = None
    """Override `TRAZA_LLM_MODEL` for this run."""
