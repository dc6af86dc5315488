"""Queue and task names shared by the job definitions and the webhook's atomic enqueue."""

from __future__ import annotations

TURN_QUEUE = "turns"
SEND_QUEUE = "sends"
PROCESS_CONVERSATION = "process_conversation"


def conversation_lock(conversation_id: int) -> str:
    """The procrastinate lock (and queueing lock) that serialises one conversation's turns."""
    return f"conversation:{conversation_id}"
