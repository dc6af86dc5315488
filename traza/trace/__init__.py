"""The trace: every step of every conversation, who took it, why, and how long it took.

`writer` appends events, `buffer` holds a turn's events until its effect commits,
`kinds` names every event kind, `reader` reads a conversation's events back.
"""

from traza.trace.writer import CUSTOMER, bot, human, record, system

__all__ = ["CUSTOMER", "bot", "human", "record", "system"]
