"""The recruiting tools (candidate pool, calendar) and the interviewers' iCalendar feeds.

Frozen clock: Monday 2026-03-02 10:00 Madrid (09:00 UTC). Ana writes from Mexico City
(UTC-6); Roberto is another candidate whose data must never reach Ana's tools.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from icalendar import Calendar

MADRID = ZoneInfo("Europe/Madrid")
MEXICO = ZoneInfo("America/Mexico_City")
LUCIA_TOKEN = "lucia-calendar-token-0123456789abcdef"
MARCO_TOKEN = "marco-calendar-token-0123456789abcdef"
ROBERTO = ("Roberto", "Secreto", "roberto@secret.example", "5215559990000")


def madrid(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=MADRID)


def one(db: Any, sql: str, *args: Any) -> dict[str, Any]:
    row = db.execute(sql, args).fetchone()
    assert row is not None
    return dict(row)


def seed(db: Any) -> dict[str, int]:
    """Two candidates (and a third for races), two vacancies, two interviewers."""
    ids: dict[str, int] = {}
    inbox = one(db, "INSERT INTO inboxes (phone_number_id) VALUES ('109876543210') RETURNING id")
    for key, wa_id in (("ana", "5215550001111"), ("roberto", ROBERTO[3])):
        contact = one(db, "INSERT INTO contacts (wa_id) VALUES (%s) RETURNING id", wa_id)
        ids[f"{key}_contact"] = contact["id"]
        ids[f"{key}_conversation"] = one(
            db,
            "INSERT INTO conversations (inbox_id, contact_id, thread_id) "
            "VALUES (%s, %s, %s) RETURNING id",
            inbox["id"],
            contact["id"],
            f"thread-{key}",
        )["id"]
    ids["ana"] = one(
        db,
        "INSERT INTO candidates (name, wa_id, contact_id, timezone, profile) "
        "VALUES ('Ana Pérez', '5215550001111', %s, 'America/Mexico_City', "
        """'{"city": "Ciudad de México"}') RETURNING id""",
        ids["ana_contact"],
    )["id"]
    ids["roberto"] = one(
        db,
        "INSERT INTO candidates (name, wa_id, email, contact_id, profile) "
        """VALUES (%s, %s, %s, %s, '{"city": "Sevilla", "cv_url": "https://cv/roberto"}') """
        "RETURNING id",
        f"{ROBERTO[0]} {ROBERTO[1]}",
        ROBERTO[3],
        ROBERTO[2],
        ids["roberto_contact"],
    )["id"]
    ids["carla"] = one(db, "INSERT INTO candidates (name) VALUES ('Carla Ruiz') RETURNING id")["id"]
    ids["backend"] = one(
        db,
        "INSERT INTO vacancies (title, location, required_fields) VALUES "
        """('Backend Engineer', 'Madrid', '["cv_url", "years_experience", "city"]') RETURNING id""",
    )["id"]
    ids["data"] = one(
        db,
        "INSERT INTO vacancies (title, required_fields) VALUES "
        """('Data Analyst', '["cv_url", "portfolio_url"]') RETURNING id""",
    )["id"]
    for key, candidate, vacancy, stage in (
        ("ana_backend", "ana", "backend", "screening"),
        ("ana_data", "ana", "data", "interview"),
        ("roberto_backend", "roberto", "backend", "interview"),
        ("carla_backend", "carla", "backend", "interview"),
    ):
        ids[key] = one(
            db,
            "INSERT INTO applications (candidate_id, vacancy_id, stage, stage_changed_at) "
            "VALUES (%s, %s, %s, '2026-02-27T12:00:00Z') RETURNING id",
            ids[candidate],
            ids[vacancy],
            stage,
        )["id"]
    lucia = {
        "weekly": {"mon": ["09:00-13:00"], "tue": ["09:00-13:00", "15:00-18:00"]},
        "video_link": "https://meet.example/lucia",
    }
    ids["lucia"] = one(
        db,
        "INSERT INTO interviewers (name, timezone, availability, calendar_token) "
        "VALUES ('Lucía Gómez', 'Europe/Madrid', %s, %s) RETURNING id",
        json.dumps(lucia),
        LUCIA_TOKEN,
    )["id"]
    marco = {"timezone": "Europe/Madrid", "weekly": {"tue": ["15:00-17:00"]}}
    ids["marco"] = one(
        db,
        "INSERT INTO interviewers (name, availability, calendar_token) "
        "VALUES ('Marco Díaz', %s, %s) RETURNING id",
        json.dumps(marco),
        MARCO_TOKEN,
    )["id"]
    # Roberto's interview with Lucía on Tuesday 09:00-10:00 Madrid.
    ids["roberto_interview"] = one(
        db,
        "INSERT INTO interviews (application_id, interviewer_id, starts_at, ends_at, video_link) "
        "VALUES (%s, %s, %s, %s, 'https://meet.example/roberto-only') RETURNING id",
        ids["roberto_backend"],
        ids["lucia"],
        madrid(3, 9),
        madrid(3, 10),
    )["id"]
    # Ana's own Data interview with Marco on Tuesday 15:00-16:00 Madrid.
    ids["ana_interview"] = one(
        db,
        "INSERT INTO interviews (application_id, interviewer_id, starts_at, ends_at, video_link) "
        "VALUES (%s, %s, %s, %s, 'https://meet.example/marco') RETURNING id",
        ids["ana_data"],
        ids["marco"],
        madrid(3, 15),
        madrid(3, 16),
    )["id"]
    return ids


async def call(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run one tool function in its own transaction, as the LangChain tools do."""
    from traza.db.engine import session_scope

    async with session_scope() as session:
        result: dict[str, Any] = await fn(session, *args, **kwargs)
        return result


async def refused(fn: Any, *args: Any, **kwargs: Any) -> str:
    from tools import ToolRefused

    with pytest.raises(ToolRefused) as info:
        await call(fn, *args, **kwargs)
    return str(info.value)


def assert_nothing_of_roberto(*outputs: Any) -> None:
    text = json.dumps(outputs, default=str, ensure_ascii=False).lower()
    for secret in (*ROBERTO, "roberto-only", "sevilla", "https://cv/roberto"):
        assert secret.lower() not in text, secret


def events(db: Any, conversation_id: int, kind: str) -> list[dict[str, Any]]:
    return list(
        db.execute(
            "SELECT * FROM trace_events WHERE conversation_id = %s AND kind = %s ORDER BY id",
            (conversation_id, kind),
        ).fetchall()
    )


def in_lucias_hours(start: datetime, end: datetime) -> bool:
    s, e = start.astimezone(MADRID), end.astimezone(MADRID)
    ranges = {0: [(9, 13)], 1: [(9, 13), (15, 18)]}.get(s.weekday(), [])
    return s.date() == e.date() and any(
        s >= s.replace(hour=a, minute=0) and e <= e.replace(hour=b, minute=0) for a, b in ranges
    )


# --- candidate: status, missing fields, recorded data ---------------------------------


async def test_status_shows_only_the_candidates_own_applications_in_their_time_zone(db, frozen):
    from tools.candidate import application_status

    ids = seed(db)
    status = await call(application_status, ids["ana"])

    assert status["timezone"] == "America/Mexico_City"
    apps = {a["application_id"]: a for a in status["applications"]}
    assert set(apps) == {ids["ana_backend"], ids["ana_data"]}
    assert apps[ids["ana_backend"]]["vacancy"] == "Backend Engineer"
    assert apps[ids["ana_backend"]]["stage"] == "screening"
    assert apps[ids["ana_backend"]]["since"] == "2026-02-27T06:00:00-06:00"
    assert apps[ids["ana_backend"]]["interviews"] == []
    [interview] = apps[ids["ana_data"]]["interviews"]
    assert interview["interview_id"] == ids["ana_interview"]
    assert interview["starts_at"] == "2026-03-03T08:00:00-06:00"  # 15:00 Madrid
    assert interview["video_link"] == "https://meet.example/marco"

    one_app = await call(application_status, ids["ana"], ids["ana_data"])
    assert [a["application_id"] for a in one_app["applications"]] == [ids["ana_data"]]
    assert_nothing_of_roberto(status, one_app)


async def test_missing_fields_are_required_keys_not_yet_in_the_profile(db, frozen):
    from tools.candidate import missing_fields

    ids = seed(db)
    db.execute(
        'UPDATE candidates SET profile = profile || \'{"years_experience": "  "}\' WHERE id = %s',
        (ids["ana"],),
    )
    result = await call(missing_fields, ids["ana"])

    # city is given; a blank years_experience counts as missing; order follows the vacancies.
    assert result["missing"] == ["cv_url", "years_experience", "portfolio_url"]
    per_app = {a["application_id"]: a["missing"] for a in result["applications"]}
    assert per_app == {
        ids["ana_backend"]: ["cv_url", "years_experience"],
        ids["ana_data"]: ["cv_url", "portfolio_url"],
    }
    only_data = await call(missing_fields, ids["ana"], ids["ana_data"])
    assert only_data["missing"] == ["cv_url", "portfolio_url"]


async def test_record_data_writes_allowed_fields_refuses_the_rest_and_is_traced(db, frozen):
    from tools.candidate import record_data

    ids = seed(db)
    result = await call(
        record_data,
        ids["ana"],
        {
            "cv_url": "  https://cv.example/ana.pdf ",
            "Years_Experience": 5,
            "email": "ana@example.com",
            "name": "Someone Else",
            "wa_id": "5210000000000",
            "salary": "100k",
            "linkedin": "not a link",
            "city": "x" * 501,
        },
    )

    assert result["recorded"] == ["cv_url", "email", "years_experience"]
    assert set(result["refused"]) == {"name", "wa_id", "salary", "linkedin", "city"}
    assert result["refused"]["linkedin"] == "not an http(s) link"
    assert "500" in result["refused"]["city"]
    assert result["missing"] == ["portfolio_url"]

    row = one(db, "SELECT * FROM candidates WHERE id = %s", ids["ana"])
    assert row["name"] == "Ana Pérez" and row["wa_id"] == "5215550001111"
    assert row["email"] == "ana@example.com"
    assert row["profile"] == {
        "city": "Ciudad de México",
        "cv_url": "https://cv.example/ana.pdf",
        "years_experience": "5",
        "email": "ana@example.com",
    }
    [event] = events(db, ids["ana_conversation"], "tool.record_data")
    assert event["actor"] == "bot:traza"
    assert event["data"]["candidate_id"] == ids["ana"]
    assert event["data"]["recorded"]["cv_url"] == "https://cv.example/ana.pdf"
    assert set(event["data"]["refused"]) == set(result["refused"])
    # What may be written follows the vacancies' current requirements.
    db.execute("UPDATE vacancies SET required_fields = '[\"visa\"]' WHERE id = %s", (ids["data"],))
    later = await call(record_data, ids["ana"], {"visa": "sí", "portfolio_url": "https://p"})
    assert later["recorded"] == ["visa"] and set(later["refused"]) == {"portfolio_url"}
    assert not events(db, ids["roberto_conversation"], "tool.record_data")


# --- calendar: free slots, booking, confirming, rescheduling ----------------------------


async def test_free_slots_follow_availability_and_skip_busy_times(db, frozen):
    from tools.calendar import free_slots

    ids = seed(db)
    result = await call(free_slots, ids["ana"], ids["ana_backend"], days=7, limit=50, per_day=50)

    assert result["timezone"] == "America/Mexico_City" and result["duration_minutes"] == 45
    slots = [
        (datetime.fromisoformat(s["starts_at"]), datetime.fromisoformat(s["ends_at"]))
        for s in result["slots"]
    ]
    assert all(s.utcoffset() == timedelta(hours=-6) for s, _ in slots)  # Ana's zone
    # Monday: 2 hours' notice from 10:00 leaves 12:00-12:45 before Lucía's 13:00 end.
    # Tuesday: 09:00-10:00 is Roberto's interview (Lucía is busy; his name never shows),
    # 15:00-16:00 is Ana's own interview with Marco. The week ends next Monday 10:00.
    assert [s.astimezone(MADRID).strftime("%a %d %H:%M") for s, _ in slots] == [
        "Mon 02 12:00",
        "Tue 03 10:00",
        "Tue 03 10:45",
        "Tue 03 11:30",
        "Tue 03 12:15",
        "Tue 03 16:00",
        "Tue 03 16:45",
        "Mon 09 09:00",
    ]
    assert result["slots"][0] == {
        "starts_at": "2026-03-02T05:00:00-06:00",
        "ends_at": "2026-03-02T05:45:00-06:00",
    }
    busy = [(madrid(3, 9), madrid(3, 10)), (madrid(3, 15), madrid(3, 16))]
    for start, end in slots:
        assert end - start == timedelta(minutes=45)
        assert in_lucias_hours(start, end), start
        assert not any(s < end and e > start for s, e in busy), start
        assert start < frozen.now() + timedelta(days=7)
    assert_nothing_of_roberto(result)

    spread = await call(free_slots, ids["ana"], ids["ana_backend"])
    per_day: dict[Any, int] = {}
    for s in spread["slots"]:
        day = datetime.fromisoformat(s["starts_at"]).astimezone(MADRID).date()
        per_day[day] = per_day.get(day, 0) + 1
    assert len(spread["slots"]) <= 8 and max(per_day.values()) <= 3 and len(per_day) >= 3


async def test_booking_refuses_taken_outside_and_too_soon_times_and_books_a_free_slot(db, frozen):
    from tools.calendar import book_interview, free_slots

    ids = seed(db)
    ana, app = ids["ana"], ids["ana_backend"]
    taken = await refused(book_interview, ana, app, madrid(3, 9, 15).isoformat())
    assert taken == "that time is no longer free; ask for free slots"
    own_busy = await refused(book_interview, ana, app, madrid(3, 15, 30))
    assert own_busy == taken  # Ana's own Data interview
    outside = await refused(book_interview, ana, app, madrid(3, 13).isoformat())
    assert "not available" in outside
    assert "too soon" in await refused(book_interview, ana, app, madrid(2, 10, 30))
    assert "date and time" in await refused(book_interview, ana, app, "mañana a las 10")

    # A time without an offset is in Ana's zone: 03:00 Mexico is 10:00 Madrid.
    booked = await call(book_interview, ana, app, "2026-03-03T03:00:00")
    assert booked["booked"] is True and booked["status"] == "scheduled"
    assert booked["starts_at"] == "2026-03-03T03:00:00-06:00"
    assert booked["ends_at"] == "2026-03-03T03:45:00-06:00"
    assert booked["video_link"] == "https://meet.example/lucia"
    row = one(db, "SELECT * FROM interviews WHERE id = %s", booked["interview_id"])
    assert row["interviewer_id"] == ids["lucia"] and row["sequence"] == 0
    assert row["starts_at"] == madrid(3, 10) and row["application_id"] == app
    stage = one(db, "SELECT stage FROM applications WHERE id = %s", app)["stage"]
    assert stage == "screening"  # booking moves nothing else
    [event] = events(db, ids["ana_conversation"], "tool.book_interview")
    assert event["data"]["interview_id"] == booked["interview_id"]

    again = await refused(book_interview, ana, app, madrid(3, 11))
    assert again == f"this application already has interview {booked['interview_id']}; " + (
        "reschedule it instead"
    )
    slots = await call(free_slots, ana, app, limit=50, per_day=50)
    assert "2026-03-03T03:00:00-06:00" not in [s["starts_at"] for s in slots["slots"]]


async def test_two_candidates_racing_for_one_slot_get_it_once(db, frozen):
    from tools import ToolRefused
    from tools.calendar import book_interview

    ids = seed(db)

    async def attempt(candidate: str, application: str) -> str:
        try:
            await call(book_interview, ids[candidate], ids[application], madrid(3, 11))
        except ToolRefused as exc:
            return str(exc)
        return "booked"

    results = await asyncio.gather(attempt("ana", "ana_backend"), attempt("carla", "carla_backend"))
    assert sorted(results) == ["booked", "that time is no longer free; ask for free slots"]
    count = one(db, "SELECT count(*) AS n FROM interviews WHERE starts_at = %s", madrid(3, 11))["n"]
    assert count == 1


async def test_confirm_and_reschedule_update_status_times_and_sequence(db, frozen):
    from tools.calendar import confirm_interview, reschedule_interview

    ids = seed(db)
    ana, interview = ids["ana"], ids["ana_interview"]
    for trigger in ("interview_24h", "interview_unconfirmed"):
        db.execute(
            "INSERT INTO followups (key, agent, trigger, candidate_id, application_id, "
            "interview_id, due_at) VALUES (%s, 'seguimiento', %s, %s, %s, %s, %s)",
            (f"{trigger}:{interview}", trigger, ana, ids["ana_data"], interview, madrid(2, 15)),
        )

    def planned() -> dict[str, str]:
        rows = db.execute("SELECT trigger, status FROM followups").fetchall()
        return {r["trigger"]: r["status"] for r in rows}

    confirmed = await call(confirm_interview, ana, interview)
    assert confirmed["confirmed"] is True and confirmed["status"] == "confirmed"
    row = one(db, "SELECT * FROM interviews WHERE id = %s", interview)
    assert row["status"] == "confirmed" and row["confirmed_at"] == frozen.now()
    assert row["sequence"] == 0
    # Confirmed: no "unconfirmed" alert; the day-before reminder still goes.
    assert planned() == {"interview_24h": "scheduled", "interview_unconfirmed": "cancelled"}
    again = await call(confirm_interview, ana, interview)  # idempotent
    assert again["status"] == "confirmed"
    assert len(events(db, ids["ana_conversation"], "tool.confirm_interview")) == 1

    # Marco is free Tuesday 15:00-17:00 only; 16:00 is free, 16:30 would end after 17:00.
    assert "not available" in await refused(reschedule_interview, ana, interview, madrid(3, 16, 30))
    assert "already at that time" in await refused(
        reschedule_interview, ana, interview, madrid(3, 15)
    )
    moved = await call(reschedule_interview, ana, interview, madrid(3, 16).isoformat())
    assert moved["rescheduled"] is True and moved["status"] == "rescheduled"
    assert moved["previous_starts_at"] == "2026-03-03T08:00:00-06:00"
    assert moved["starts_at"] == "2026-03-03T09:00:00-06:00"
    row = one(db, "SELECT * FROM interviews WHERE id = %s", interview)
    assert row["starts_at"] == madrid(3, 16) and row["ends_at"] == madrid(3, 17)
    assert row["sequence"] == 1 and row["confirmed_at"] is None
    assert planned() == {"interview_24h": "cancelled", "interview_unconfirmed": "cancelled"}
    [event] = events(db, ids["ana_conversation"], "tool.reschedule_interview")
    assert event["data"]["previous_starts_at"] == "2026-03-03T08:00:00-06:00"

    db.execute("UPDATE interviews SET status = 'cancelled' WHERE id = %s", (interview,))
    assert await refused(confirm_interview, ana, interview) == (
        f"interview {interview} is cancelled"
    )


async def test_no_tool_reaches_another_candidates_application_or_interview(db, frozen):
    from tools.calendar import book_interview, confirm_interview, free_slots, reschedule_interview
    from tools.candidate import application_status, missing_fields

    ids = seed(db)
    ana, theirs, missing = ids["ana"], ids["roberto_backend"], 999_999
    for fn, extra in (
        (application_status, ()),
        (missing_fields, ()),
        (free_slots, ()),
        (book_interview, (madrid(3, 11),)),
    ):
        other = await refused(fn, ana, theirs, *extra)
        assert other == await refused(fn, ana, missing, *extra)
        assert other == "that application is not one of this candidate's"
        assert_nothing_of_roberto(other)
    for fn, extra in ((confirm_interview, ()), (reschedule_interview, (madrid(3, 11),))):
        other = await refused(fn, ana, ids["roberto_interview"], *extra)
        assert other == await refused(fn, ana, missing, *extra)
        assert other == "that interview is not one of this candidate's"

    row = one(db, "SELECT * FROM interviews WHERE id = %s", ids["roberto_interview"])
    assert row["status"] == "scheduled" and row["sequence"] == 0
    assert row["starts_at"] == madrid(3, 9)
    assert db.execute("SELECT count(*) AS n FROM interviews").fetchone()["n"] == 2
    assert not db.execute("SELECT 1 FROM trace_events").fetchall()


# --- the LangChain tools the model binds ------------------------------------------------


async def test_langchain_tools_have_no_candidate_argument_and_refuse_a_forged_one(db, frozen):
    from langchain_core.messages import ToolMessage

    from tools import tools_for

    ids = seed(db)
    tools = {t.name: t for t in tools_for(ids["ana"])}
    assert set(tools) == {
        "application_status",
        "missing_fields",
        "record_data",
        "free_slots",
        "book_interview",
        "confirm_interview",
        "reschedule_interview",
    }
    assert {t.name for t in tools_for(ids["ana"], read_only=True)} == {
        "application_status",
        "missing_fields",
        "free_slots",
    }
    for tool in tools.values():
        properties = tool.tool_call_schema.model_json_schema().get("properties", {})
        assert not [p for p in properties if "candidate" in p], tool.name
        assert not [a for a in tool.args if "candidate" in a], tool.name
        assert tool.description

    status = await tools["application_status"].ainvoke({})
    assert {a["application_id"] for a in status["applications"]} == {
        ids["ana_backend"],
        ids["ana_data"],
    }
    # The model names Roberto: as an extra argument, then through his ids.
    forged = await tools["application_status"].ainvoke({"candidate_id": ids["roberto"]})
    assert json.loads(forged) == {"error": "invalid arguments: candidate_id"}
    tool_call = {
        "type": "tool_call",
        "id": "call-1",
        "name": "missing_fields",
        "args": {"candidate_id": ids["roberto"], "application_id": ids["roberto_backend"]},
    }
    message = await tools["missing_fields"].ainvoke(tool_call)
    assert isinstance(message, ToolMessage) and "invalid arguments" in message.content
    theirs = await tools["application_status"].ainvoke({"application_id": ids["roberto_backend"]})
    assert theirs == {"error": "that application is not one of this candidate's"}
    confirm = await tools["confirm_interview"].ainvoke({"interview_id": ids["roberto_interview"]})
    assert confirm == {"error": "that interview is not one of this candidate's"}
    assert_nothing_of_roberto(status, forged, message.content, theirs, confirm)

    slots = await tools["free_slots"].ainvoke({"application_id": ids["ana_backend"], "days": 3})
    first = slots["slots"][0]["starts_at"]
    booked = await tools["book_interview"].ainvoke(
        {"application_id": ids["ana_backend"], "starts_at": first}
    )
    assert booked["booked"] is True and booked["starts_at"] == first
    recorded = await tools["record_data"].ainvoke({"fields": {"city": "Puebla", "name": "X"}})
    assert recorded["recorded"] == ["city"] and "name" in recorded["refused"]
    assert one(db, "SELECT name FROM candidates WHERE id = %s", ids["ana"])["name"] == "Ana Pérez"
    actors = {
        e["actor"]
        for e in db.execute(
            "SELECT actor FROM trace_events WHERE conversation_id = %s",
            (ids["ana_conversation"],),
        ).fetchall()
    }
    assert actors == {"bot:traza"}


# --- the interviewers' iCalendar feeds --------------------------------------------------


@pytest.fixture
async def calendars() -> Any:
    from api.routes import calendar

    app = FastAPI()
    app.include_router(calendar.router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://traza") as client:
        yield client


async def feed(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    response = await client.get(f"/calendars/{token}.ics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/calendar; charset=utf-8"
    cal = Calendar.from_ical(response.content)
    return {"calendar": cal, "events": {str(e["uid"]): e for e in cal.walk("VEVENT")}}


async def test_interviewer_feed_lists_their_interviews_and_follows_changes(db, frozen, calendars):
    from api.routes.calendar import calendar_url
    from tools.calendar import book_interview, confirm_interview, reschedule_interview

    ids = seed(db)
    booked = await call(book_interview, ids["ana"], ids["ana_backend"], madrid(3, 11))
    theirs = f"interview-{ids['roberto_interview']}@traza"
    ours = f"interview-{booked['interview_id']}@traza"

    lucia = await feed(calendars, LUCIA_TOKEN)
    cal = lucia["calendar"]
    assert str(cal["prodid"]) == "-//traza//interviews//ES"
    assert str(cal["x-wr-calname"]) == "Entrevistas · Lucía Gómez"
    assert set(lucia["events"]) == {theirs, ours}  # not Marco's interview with Ana
    event = lucia["events"][ours]
    assert event.decoded("dtstart") == madrid(3, 11).astimezone(UTC)
    assert event.decoded("dtstart").tzinfo is not None
    assert "DTSTART:20260303T100000Z" in event.to_ical().decode()
    assert event.decoded("dtend") == madrid(3, 11, 45).astimezone(UTC)
    assert str(event["summary"]) == "Entrevista: Backend Engineer (Ana)"
    assert str(event["status"]) == "TENTATIVE" and int(event["sequence"]) == 0
    assert str(event["location"]) == "https://meet.example/lucia"
    assert str(event["url"]) == "https://meet.example/lucia"
    marco = await feed(calendars, MARCO_TOKEN)
    assert set(marco["events"]) == {f"interview-{ids['ana_interview']}@traza"}

    await call(confirm_interview, ids["ana"], booked["interview_id"])
    assert str((await feed(calendars, LUCIA_TOKEN))["events"][ours]["status"]) == "CONFIRMED"

    await call(reschedule_interview, ids["ana"], booked["interview_id"], madrid(3, 16))
    moved = (await feed(calendars, LUCIA_TOKEN))["events"][ours]
    assert int(moved["sequence"]) == 1 and str(moved["status"]) == "TENTATIVE"
    assert moved.decoded("dtstart") == madrid(3, 16).astimezone(UTC)

    db.execute(
        "UPDATE interviews SET status = 'cancelled', sequence = sequence + 1 WHERE id = %s",
        (ids["roberto_interview"],),
    )
    cancelled = (await feed(calendars, LUCIA_TOKEN))["events"][theirs]
    assert str(cancelled["status"]) == "CANCELLED" and int(cancelled["sequence"]) == 1

    from traza.db.models import Interviewer

    assert calendar_url(Interviewer(calendar_token=LUCIA_TOKEN)) == (
        f"/calendars/{LUCIA_TOKEN}.ics"
    )


async def test_unknown_calendar_token_is_404(db, calendars):
    seed(db)
    for token in ("not-a-token", "x" * 65, "lucia%20calendar"):
        response = await calendars.get(f"/calendars/{token}.ics")
        assert response.status_code == 404, token
        assert response.json() == {"detail": "unknown calendar"}
    assert (await calendars.get(f"/calendars/{LUCIA_TOKEN}")).status_code == 404
