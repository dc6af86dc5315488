"""Load the trained models, the language detector and the guardrail policy up front."""

from __future__ import annotations

from traza.decisions import classifier, guardrails, judgment, language


def preload() -> None:
    """Load everything a turn needs now, before an event loop runs.

    Called where the graph is built: the first turn never waits for a model file (or, the
    very first time, for training), and LangGraph Studio sees no blocking read in a run.
    """
    judgment.current()
    guardrails.reply_model()
    guardrails.policy().vocabulary()
    language.detector()
    classifier.classify_turn(["hola"])
