"""What a stored update changes besides its own row: edits, deletions, system and call events.

Each kind of WhatsApp update is recorded for what it is, never as text the bot failed to
understand:

- an **edit** replaces the original message's text (the previous text is kept in its
  `content.edits`, and `message.edited` in the trace holds both versions); the edit then
  runs a turn like any message, so it is judged again;
- a **deletion** (`revoke`) marks the original deleted (`message.deleted`); never answered;
- a **system** change of number or of user id updates the contact; an identity change is
  recorded; none is answered;
- a **call-permission answer** and **call events** are recorded on the contact;
- a **Flow completion** stores its answers on the candidate's profile (`flows.<name>`);
- a **reaction** is recorded (`message.reacted`); where the rules say so
  (`reactions.confirm_interview`), a positive one to an interview confirmation request is
  the candidate's answer: it carries that request's confirm payload and runs a turn, so
  it is decided exactly as a press of the "confirm" button.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from traza import trace
from traza.db.queue import PROCESS_CONVERSATION, TURN_QUEUE, defer_in, turn_job_lock
from traza.ingest.payload import CallEvent, InboundMessage
from traza.rules import active
from traza.trace import kinds

EFFECT_TYPES = frozenset({"edit", "revoke", "system", "call_permission", "flow", "reaction"})
"""Types whose storage changes other rows (they take the transactional store path)."""

EDIT = text(
    """
    UPDATE messages SET
      text = :text,
      content = jsonb_set(content, '{edits}',
                          coalesce(content->'edits', '[]'::jsonb)
                          || jsonb_build_array(jsonb_build_object(
                               'text', text, 'replaced_by', CAST(:wamid AS text),
                               'at', now()::text)))
    WHERE wa_message_id = :original AND direction = 'in' AND conversation_id = :cid
    RETURNING id, (content->'edits'->-1->>'text') AS previous
    """
)
REVOKE = text(
    """
    UPDATE messages SET content = content || jsonb_build_object('deleted_at', now()::text,
                                                                'deleted_by', CAST(:wamid AS text))
    WHERE wa_message_id = :original AND direction = 'in' AND conversation_id = :cid
    RETURNING id
    """
)
REACTED_TO = text(
    "SELECT content FROM messages"
    " WHERE wa_message_id = :wamid AND direction = 'out' AND conversation_id = :cid"
)
# The reaction becomes the turn's answer: unprocessed, with the request's payload; as a
# message from the candidate it opens the 24-hour window like any other (for the reply).
AS_ANSWER = text(
    """
    WITH m AS (
      UPDATE messages SET processed_at = NULL,
        content = content || jsonb_build_object('payload', CAST(:payload AS text))
      WHERE wa_message_id = :wamid AND direction = 'in' AND conversation_id = :cid
      RETURNING wa_timestamp
    )
    UPDATE conversations c
       SET last_inbound_at = GREATEST(c.last_inbound_at, (SELECT wa_timestamp FROM m))
     WHERE c.id = :cid
    """
)
CONFIRM_PREFIX = "interview:confirm:"
_EMOJI_VARIANTS = dict.fromkeys([0xFE0F, *range(0x1F3FB, 0x1F400)])  # selector, skin tones
CONTACT_OF = text(
    "SELECT c.contact_id, k.id AS candidate_id FROM conversations c "
    "LEFT JOIN candidates k ON k.contact_id = c.contact_id WHERE c.id = :cid"
)
NEW_NUMBER = text(
    """
    UPDATE contacts SET wa_id = :new
    WHERE id = :contact AND NOT EXISTS (SELECT 1 FROM contacts o WHERE o.wa_id = :new)
    RETURNING id
    """
)
NEW_USER_ID = text(
    """
    UPDATE contacts SET bsuid = :new
    WHERE id = :contact AND NOT EXISTS (SELECT 1 FROM contacts o WHERE o.bsuid = :new)
    RETURNING id
    """
)
FLOW_ANSWERS = text(
    """
    UPDATE candidates SET
      profile = jsonb_set(coalesce(profile, '{}'::jsonb), '{flows}',
                          coalesce(profile->'flows', '{}'::jsonb)
                          || jsonb_build_object(CAST(:name AS text), CAST(:answers AS jsonb))),
      updated_at = now()
    WHERE id = :candidate
    """
)
CALL_CONVERSATION = text(
    """
    SELECT c.id FROM conversations c JOIN contacts ct ON ct.id = c.contact_id
      JOIN inboxes i ON i.id = c.inbox_id
     WHERE ct.wa_id = :wa_id AND i.phone_number_id = :pnid AND c.status = 'open'
     ORDER BY c.id DESC LIMIT 1
    """
)


async def apply(conn: AsyncConnection, message: InboundMessage, conversation_id: int) -> None:
    """Carry out what a newly stored message of an effect type changes (in its transaction)."""
    content = message.content
    actor = trace.CUSTOMER
    if message.type == "edit":
        row = (
            await conn.execute(
                EDIT,
                {
                    "text": message.text,
                    "wamid": message.wa_message_id,
                    "original": content.get("original_message_id"),
                    "cid": conversation_id,
                },
            )
        ).first()
        await trace.record(
            conn,
            conversation_id=conversation_id,
            kind=kinds.MESSAGE_EDITED,
            actor=actor,
            data={
                "original_message_id": content.get("original_message_id"),
                "found": row is not None,
                "previous_text": row.previous if row else None,
                "text": message.text,
            },
            message_id=row.id if row else None,
        )
    elif message.type == "revoke":
        row = (
            await conn.execute(
                REVOKE,
                {
                    "wamid": message.wa_message_id,
                    "original": content.get("original_message_id"),
                    "cid": conversation_id,
                },
            )
        ).first()
        await trace.record(
            conn,
            conversation_id=conversation_id,
            kind=kinds.MESSAGE_DELETED,
            actor=actor,
            data={"original_message_id": content.get("original_message_id"), "found": bool(row)},
            message_id=row.id if row else None,
        )
    elif message.type == "system":
        await _system_change(conn, content, conversation_id)
    elif message.type == "call_permission":
        await trace.record(
            conn,
            conversation_id=conversation_id,
            kind=kinds.CONTACT_CALL_PERMISSION,
            actor=actor,
            data={
                "response": content.get("response"),
                "expires": content.get("expiration_timestamp"),
                "source": content.get("response_source"),
            },
        )
    elif message.type == "flow":
        await _flow_completed(conn, content, conversation_id)
    elif message.type == "reaction":
        await _reaction(conn, message, conversation_id)


def plain_emoji(emoji: str) -> str:
    """The emoji without skin tone or variation selector ("👍🏽" and "👍" are one answer)."""
    return emoji.translate(_EMOJI_VARIANTS).strip()


def confirm_payload(content: dict[str, Any]) -> str | None:
    """The interview-confirm payload of an outbound message's buttons, if it asked for one."""
    buttons = content.get("buttons")
    ids = [b.get("id") for b in buttons if isinstance(b, dict)] if isinstance(buttons, list) else []
    payloads = content.get("button_payloads")
    ids += payloads if isinstance(payloads, list) else []
    return next((p for p in ids if isinstance(p, str) and p.startswith(CONFIRM_PREFIX)), None)


async def _reaction(conn: AsyncConnection, message: InboundMessage, cid: int) -> None:
    content = message.content
    reacted_to, emoji = content.get("message_id"), str(content.get("emoji") or "")
    data: dict[str, Any] = {"reacted_to": reacted_to, "emoji": emoji, "removed": not emoji}
    reactions = (await active.current()).rules.reactions
    positive = {plain_emoji(e) for e in reactions.positive}
    if reactions.confirm_interview and emoji and plain_emoji(emoji) in positive:
        row = (await conn.execute(REACTED_TO, {"wamid": reacted_to, "cid": cid})).first()
        payload = confirm_payload(row.content or {}) if row is not None else None
        if payload is not None:
            await conn.execute(
                AS_ANSWER, {"payload": payload, "wamid": message.wa_message_id, "cid": cid}
            )
            lock = turn_job_lock(cid)
            await defer_in(
                conn,
                PROCESS_CONVERSATION,
                {"conversation_id": cid},
                lock=lock,
                queueing_lock=lock,
                queue=TURN_QUEUE,
            )
            data["counts_as"] = payload
    await trace.record(
        conn, conversation_id=cid, kind=kinds.MESSAGE_REACTED, actor=trace.CUSTOMER, data=data
    )


async def _system_change(conn: AsyncConnection, content: dict[str, Any], cid: int) -> None:
    owner = (await conn.execute(CONTACT_OF, {"cid": cid})).first()
    kind = str(content.get("type") or "")
    data: dict[str, Any] = {"type": kind}
    if owner is not None and kind == "user_changed_number" and content.get("wa_id"):
        changed = await conn.execute(
            NEW_NUMBER, {"new": str(content["wa_id"])[:32], "contact": owner.contact_id}
        )
        data["updated"] = changed.first() is not None
    elif owner is not None and kind == "user_changed_user_id" and content.get("user_id"):
        changed = await conn.execute(
            NEW_USER_ID, {"new": str(content["user_id"])[:128], "contact": owner.contact_id}
        )
        data["updated"] = changed.first() is not None
    await trace.record(
        conn,
        conversation_id=cid,
        kind=kinds.CONTACT_CHANGED,
        actor=trace.system("whatsapp"),
        data=data,
    )


async def _flow_completed(conn: AsyncConnection, content: dict[str, Any], cid: int) -> None:
    owner = (await conn.execute(CONTACT_OF, {"cid": cid})).first()
    answers = content.get("response") or {}
    name = str(content.get("name") or "flow")[:64]
    stored = False
    if owner is not None and owner.candidate_id is not None:
        await conn.execute(
            FLOW_ANSWERS,
            {"candidate": owner.candidate_id, "name": name, "answers": json.dumps(answers)},
        )
        stored = True
    await trace.record(
        conn,
        conversation_id=cid,
        kind=kinds.FLOW_COMPLETED,
        actor=trace.CUSTOMER,
        data={"name": name, "fields": sorted(answers), "stored_on_candidate": stored},
    )


async def record_call(conn: AsyncConnection, call: CallEvent) -> None:
    """A call event (connect, terminate, status): recorded on the contact, never answered."""
    cid = None
    if call.wa_id:
        cid = (
            await conn.execute(
                CALL_CONVERSATION, {"wa_id": call.wa_id, "pnid": call.phone_number_id}
            )
        ).scalar_one_or_none()
    await trace.record(
        conn,
        conversation_id=cid,
        kind=kinds.CONTACT_CALL,
        actor=trace.system("whatsapp"),
        data={
            "call_id": call.call_id,
            "event": call.event,
            "direction": call.direction,
            "status": call.status,
        },
    )
