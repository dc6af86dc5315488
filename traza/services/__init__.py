"""Use cases, one module each: run a turn, resume or hand over, fire a follow-up, replay.

Entry points (`api`, `traza.cli`, `traza.worker`) call these; they run the graph
(`traza.services.runtime`) under the conversation's lock and make the deliveries the
turn asked for.
"""
