"""Whose data a reply may carry: the candidate's own, and the pool's and staff's that it must not.

The guardrails' `people` layer compares a reply with real data. Only what the reply could
name is looked up — its capitalised word sequences, phone numbers and e-mails — so the
check costs one statement however large the talent pool is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import phonenumbers

from traza.db.engine import autocommit
from traza.decisions.entities import plain
from traza.decisions.guardrails import EMAIL, PHONE_REGIONS, People, capitalised_names, phone_key
from traza.recruiting import repository


def _phones(reply: str) -> list[str]:
    keys = set()
    for region in PHONE_REGIONS:
        for match in phonenumbers.PhoneNumberMatcher(reply, region):
            keys.add(phone_key(match.raw_string))
    return sorted(keys)


@dataclass(frozen=True)
class Own:
    """The conversation's own person as a turn saw them (contact and candidate data)."""

    names: frozenset[str]
    phones: frozenset[str]
    emails: frozenset[str]


_recorded_own: ContextVar[Own | None] = ContextVar("traza_recorded_own", default=None)


@contextmanager
def as_recorded(
    *, contact_name: str | None, contact_wa_id: str | None, candidate: dict[str, Any] | None
) -> Iterator[None]:
    """Inside this block the conversation's own data is this snapshot, not today's rows.

    A replay feeds each turn what the turn saw: a candidate renamed since must not make
    the recorded reply look like it names somebody else.
    """
    candidate = candidate or {}
    own = Own(
        names=frozenset(n for n in (contact_name, candidate.get("name")) if n),
        phones=frozenset(p for p in (contact_wa_id, candidate.get("phone")) if p),
        emails=frozenset(e for e in (candidate.get("email"),) if e),
    )
    token = _recorded_own.set(own)
    try:
        yield
    finally:
        _recorded_own.reset(token)


async def people_for_reply(
    conversation_id: int, reply: str, *, contact_name: str | None = None
) -> People:
    """The candidate's own data and the other people the reply might name.

    A reply that names nobody but the candidate (`contact_name`, known to the turn) and
    holds no phone or e-mail needs no lookup: most replies cost no extra statement.
    """
    names = sorted({n.lower() for n in capitalised_names(reply)} | set())
    emails = sorted({m.group(0).lower() for m in EMAIL.finditer(reply)})
    own_name = plain(contact_name) if contact_name else None
    strangers = [n for n in names if own_name is None or plain(n) not in own_name]
    if not strangers and not emails and not any(c.isdigit() for c in reply):
        return People(own_names=frozenset({contact_name} if contact_name else ()))
    phones = _phones(reply)
    async with autocommit() as conn:
        rows = await repository.people_named(
            conn, conversation_id=conversation_id, names=names, emails=emails, phones=phones
        )
    own = _recorded_own.get() or Own(
        names=frozenset(r.name for r in rows if r.whose == "own" and r.name),
        phones=frozenset(r.phone for r in rows if r.whose == "own" and r.phone),
        emails=frozenset(r.email for r in rows if r.whose == "own" and r.email),
    )
    other = [r for r in rows if r.whose == "other"]
    return People(
        own_names=own.names,
        own_phones=own.phones,
        own_emails=own.emails,
        other_names=frozenset(
            r.name for r in other if r.name and plain(r.name) not in {plain(n) for n in own.names}
        ),
        other_phones=frozenset(r.phone for r in other if r.phone),
        other_emails=frozenset(r.email for r in other if r.email),
    )
