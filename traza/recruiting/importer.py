"""Importing a talent pool from a CSV file: read and check every row, then upsert in batches.

`read()` never touches the database. A file that cannot be used at all (missing, in
another encoding, without a `name` column) raises `InputError` before anything is
written; a row with a problem becomes a `RowError` (line, column, message) and the other
rows go on. `write()` then upserts the good rows `batch_size` at a time, one transaction
per batch, with a handful of statements per batch rather than per row.

A row finds its candidate by `external_id` when it has one, else by WhatsApp number,
else by e-mail, so importing the same file again updates and never duplicates. A
non-empty cell overwrites; an empty cell never erases what is already known (a candidate
may have given that field in a conversation since). Imported applications plan no
follow-ups: importing a pool must not message it. Follow-ups already planned re-check
the stage when they fire, so a stage moved by an import makes them stale.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from traza import clock, trace
from traza.db.engine import get_sessionmaker
from traza.recruiting import repository
from traza.trace import kinds

COLUMNS = (
    "external_id",
    "name",
    "phone",
    "wa_id",
    "email",
    "locale",
    "timezone",
    "consent_source",
    "consent_at",
    "vacancy",
    "stage",
)
"""Columns with a meaning of their own; any other column is a profile field."""

RESERVED = frozenset({"id", "contact_id", "profile", "created_at", "updated_at", "paused_at"})
"""Candidate columns a file may not set (nor use as profile field names)."""

REACH = ("phone", "wa_id", "email")
"""A candidate needs at least one of these to be reachable and to be found again."""

BATCH = 500
SHOWN_ERRORS = 20
"""Row errors the command prints; `--errors FILE` gets all of them."""
DEFAULT_LOCALE = "es"
DEFAULT_TIMEZONE = "Europe/Madrid"
"""The `candidates` columns' defaults, for rows that leave them empty."""

_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_PHONE_JUNK = re.compile(r"[\s\-.()/]")
_DIGITS = re.compile(r"^[1-9]\d{7,14}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_LOCALE = re.compile(r"^([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]{2,8})*$")


class InputError(Exception):
    """The file cannot be imported at all; nothing was written."""


@dataclass(frozen=True, slots=True)
class RowError:
    """A problem with one row: it was not imported."""

    line: int
    column: str
    """The column (as `column_name()` spells it), or empty for the whole row."""
    message: str


def international(value: str) -> str:
    """A phone number as WhatsApp ids spell it: country code and number, digits only.

    `+52 (55) 1234-5678`, `0052 55 1234 5678` and `525512345678` all give `525512345678`.
    """
    digits = _PHONE_JUNK.sub("", value)
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    if not _DIGITS.match(digits):
        raise ValueError("not a phone number with its country code (like +52 55 1234 5678)")
    return digits


class CandidateRow(BaseModel):
    """One CSV row, checked and normalised (empty cells are None)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    external_id: str | None = Field(default=None, max_length=128)
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = None
    wa_id: str | None = None
    email: str | None = Field(default=None, max_length=320)
    locale: str | None = None
    timezone: str | None = None
    consent_source: str | None = Field(default=None, max_length=200)
    consent_at: datetime | None = None
    vacancy: str | None = Field(default=None, max_length=128)
    stage: str | None = Field(default=None, max_length=64)
    profile: dict[str, str | None] = {}

    @field_validator("phone", "wa_id")
    @classmethod
    def _international(cls, value: str | None) -> str | None:
        return None if value is None else international(value)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError("not an e-mail address")
        return None if value is None else value.lower()

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = _LOCALE.match(value)
        if match is None:
            raise ValueError("not a language code (like es, en or es-MX)")
        return match.group(1).lower()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    "not an IANA time zone (like America/Mexico_City or Europe/Madrid)"
                ) from None
        return value

    @field_validator("consent_at", mode="before")
    @classmethod
    def _iso(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(
                    "not an ISO 8601 date and time (like 2026-03-01T09:00:00-06:00)"
                ) from None
        return value

    @property
    def whatsapp(self) -> str | None:
        """The WhatsApp id: the `wa_id` column, else the phone number."""
        return self.wa_id or self.phone


@dataclass(frozen=True, slots=True)
class Row:
    """A good row and the line of the file where it starts."""

    line: int
    data: CandidateRow


@dataclass
class Sheet:
    """What `read()` found in a file."""

    columns: dict[str, str]
    """Column name as used here → the header as written in the file."""
    rows: list[Row] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    lines: int = 0
    """Data rows read (good and bad; blank lines not counted)."""
    empty: Counter[str] = field(default_factory=Counter)
    """Profile field → rows that left it empty (imported as missing)."""

    def header(self, column: str) -> str:
        """A column as the file's header writes it (errors name it so)."""
        return self.columns.get(column, column)


def column_name(header: str) -> str:
    """A header as a field name: `Years Experience` → `years_experience`, `Años` → `anos`."""
    plain = unicodedata.normalize("NFKD", header).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", plain.lower()).strip("_")


def _decode(path: Path, encoding: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not a CSV file") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return raw.decode(encoding)
    except LookupError:
        raise InputError(f"unknown encoding '{encoding}'") from None
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig")
        named = "UTF-8" if utf8 else encoding
        raise InputError(
            f"{path.name} is not {named} text (line {line}, byte {exc.start}): "
            "give its encoding with --encoding (for example cp1252 or latin-1)"
        ) from None


def _header(cells: list[str], delimiter: str) -> dict[str, str]:
    if len(cells) == 1:
        for other, spelled in ((";", "';'"), ("\t", "tab"), (",", "','"), ("|", "'|'")):
            if other != delimiter and other in cells[0]:
                raise InputError(
                    f"the header is one single column: the file looks separated by {spelled}, "
                    f"use --delimiter {spelled}"
                )
    while cells and not cells[-1].strip():  # trailing separators, as spreadsheets leave them
        cells = cells[:-1]
    columns: dict[str, str] = {}
    for number, cell in enumerate(cells, start=1):
        name = column_name(cell)
        if not name:
            raise InputError(f"column {number} of the header has no name")
        if name in columns:
            raise InputError(f"the header has the column '{name}' twice")
        if name in RESERVED:
            raise InputError(
                f"the column '{cell.strip()}' cannot be imported: rename it "
                "(the candidate's own id in another system goes in 'external_id')"
            )
        if name not in COLUMNS and not _KEY.match(name):
            raise InputError(
                f"the column '{cell.strip()}' cannot be a profile field name: it must start "
                "with a letter and be at most 64 letters, digits and underscores"
            )
        columns[name] = cell.strip()
    if "name" not in columns:
        raise InputError("the header has no 'name' column")
    if not any(c in columns for c in REACH):
        raise InputError("the header needs a 'phone', 'wa_id' or 'email' column")
    return columns


def read(
    path: Path,
    *,
    delimiter: str = ",",
    encoding: str = "utf-8-sig",
    on_row: Callable[[], None] | None = None,
) -> Sheet:
    """Read and check every row of a CSV file with a header (touches no database)."""
    content = _decode(path, encoding)
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise InputError(f"{path.name} is empty: the first line must be the header")
        sheet = Sheet(columns=_header(header, delimiter))
        names = list(sheet.columns)
        line = reader.line_num + 1
        for cells in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            sheet.lines += 1
            _check(sheet, names, cells, start)
            if on_row is not None:
                on_row()
    except csv.Error as exc:
        raise InputError(f"{path.name} line {reader.line_num}: not valid CSV: {exc}") from None
    return sheet


def _check(sheet: Sheet, names: list[str], cells: list[str], line: int) -> None:
    """Check one row: append it to `sheet.rows`, or its problems to `sheet.errors`."""
    if len(cells) > len(names) and any(c.strip() for c in cells[len(names) :]):
        sheet.errors.append(
            RowError(line, "", f"{len(cells)} values, but the header has {len(names)} columns")
        )
        return
    values: dict[str, Any] = {"profile": {}}
    for name, cell in zip(names, cells, strict=False):
        value = cell.strip() or None
        if name in COLUMNS:
            values[name] = value
        else:
            values["profile"][name] = value
    for name in names[len(cells) :]:  # a short row: the missing cells are empty
        if name not in COLUMNS:
            values["profile"][name] = None
    problems = _cross_check(values, sheet.columns)
    try:
        row = CandidateRow.model_validate(values)
    except ValidationError as exc:
        for error in exc.errors():
            where = error["loc"][1] if error["loc"][:1] == ("profile",) else error["loc"][0]
            problems.append((str(where), error["msg"].removeprefix("Value error, ")))
    else:
        if row.consent_at is not None and row.consent_at.tzinfo is None:
            zone = ZoneInfo(row.timezone or DEFAULT_TIMEZONE)
            row = row.model_copy(update={"consent_at": row.consent_at.replace(tzinfo=zone)})
        if row.consent_at is not None and row.consent_at > clock.now() + timedelta(minutes=5):
            problems.append(("consent_at", "is in the future"))
    if problems:
        order = {name: i for i, name in enumerate(sheet.columns)}
        problems.sort(key=lambda p: order.get(p[0], -1))
        sheet.errors.extend(RowError(line, column, message) for column, message in problems)
        return
    sheet.empty.update(k for k, v in row.profile.items() if v is None)
    sheet.rows.append(Row(line, row))


def _cross_check(values: dict[str, Any], columns: dict[str, str]) -> list[tuple[str, str]]:
    """Problems of presence between the row's cells, as (column, message)."""
    problems: list[tuple[str, str]] = []
    if values.get("name") is None:
        problems.append(("name", "is empty: every candidate needs a name"))
    if not any(values.get(c) for c in REACH):
        first = next(c for c in REACH if c in columns)
        problems.append((first, "a candidate needs a phone, a wa_id or an e-mail"))
    if values.get("consent_source") and not values.get("consent_at"):
        problems.append(("consent_at", "consent_source needs consent_at (when consent was given)"))
    if values.get("consent_at") and not values.get("consent_source"):
        problems.append(("consent_source", "consent_at needs consent_source (how it was given)"))
    if values.get("stage") and not values.get("vacancy"):
        problems.append(("stage", "a stage needs a vacancy"))
    return problems


# --- writing ----------------------------------------------------------------------------

FIELDS = repository.CANDIDATE_FIELDS
"""The candidate columns an import writes (besides `contact_id` and the timestamps)."""


@dataclass
class Report:
    """What an import did (or, in a dry run, would do)."""

    created: int = 0
    """Rows that created a candidate."""
    updated: int = 0
    """Rows that changed a candidate that already existed (or an earlier row created)."""
    unchanged: int = 0
    """Rows that matched a candidate and changed nothing."""
    applications_created: int = 0
    applications_moved: int = 0
    """Applications that already existed and moved to the row's stage."""
    vacancies_created: list[str] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    def add(self, other: Report) -> None:
        """Count another batch in."""
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.applications_created += other.applications_created
        self.applications_moved += other.applications_moved
        self.vacancies_created += other.vacancies_created
        self.errors += other.errors


@dataclass(eq=False)
class _Candidate:
    """A candidate as the batch sees it: loaded from the table, or new in this batch."""

    id: int | None
    values: dict[str, Any]
    contact_id: int | None = None
    touched: bool = False
    line: int = 0
    """For a candidate new in this batch: the line that created it."""
    before: dict[str, Any] | None = None
    """For a loaded candidate: its values as loaded."""

    def needs_contact(self) -> bool:
        """Whether its WhatsApp contact must be created, found again or given the consent."""
        if not self.values["wa_id"] or self.before is None:
            return bool(self.values["wa_id"])
        return (
            self.contact_id is None
            or self.values["wa_id"] != self.before["wa_id"]
            or self.values["consent_at"] != self.before["consent_at"]
        )


async def _load(session: AsyncSession, rows: Sequence[Row]) -> list[_Candidate]:
    """The existing candidates the rows may match (locked until the batch commits)."""
    external = sorted({r.data.external_id for r in rows if r.data.external_id})
    whatsapp = sorted({w for r in rows if (w := r.data.whatsapp)})
    loaded = await repository.candidates_to_match(session, external_ids=external, wa_ids=whatsapp)
    # E-mail has no index, so only the rows nothing else found look by e-mail, all at once.
    by_external = {r.external_id for r in loaded}
    by_whatsapp = {r.wa_id for r in loaded}
    emails = sorted(
        {
            r.data.email
            for r in rows
            if r.data.email
            and (
                r.data.external_id not in by_external
                if r.data.external_id
                else r.data.whatsapp not in by_whatsapp
            )
        }
    )
    if emails:
        loaded += await repository.candidates_by_email(session, emails=emails)
    seen: dict[int, _Candidate] = {}
    for r in loaded:
        if r.id not in seen:
            values = {f: getattr(r, f) for f in FIELDS}
            values["profile"] = dict(values["profile"] or {})
            seen[r.id] = _Candidate(r.id, values, r.contact_id, before=dict(values))
    return list(seen.values())


class _Index:
    """The batch's candidates by external id, WhatsApp id and e-mail."""

    def __init__(self, known: list[_Candidate]) -> None:
        self.by_external: dict[str, _Candidate] = {}
        self.by_whatsapp: dict[str, _Candidate] = {}
        self.by_email: dict[str, _Candidate] = {}
        self._keys: dict[_Candidate, list[tuple[dict[str, _Candidate], str]]] = {}
        for candidate in known:
            self.add(candidate)

    def add(self, candidate: _Candidate) -> None:
        """Index a candidate under its current keys (dropping keys it no longer has)."""
        for table, key in self._keys.pop(candidate, []):
            if table.get(key) is candidate:
                del table[key]
        v, keys = candidate.values, []
        for table, key in (
            (self.by_external, v["external_id"]),
            (self.by_whatsapp, v["wa_id"]),
            (self.by_email, (v["email"] or "").lower()),
        ):
            if key and table.setdefault(key, candidate) is candidate:
                keys.append((table, key))
        self._keys[candidate] = keys

    def find(self, row: CandidateRow) -> _Candidate | RowError | None:
        """The candidate this row is about (None: a new one), or why it cannot be told.

        By external id when the row has one, else by WhatsApp number, else by e-mail. A
        row with a number matches by e-mail only a candidate without a number: the same
        address with another number may be someone else (a shared family address).
        """
        whatsapp = row.whatsapp
        owner = self.by_whatsapp.get(whatsapp) if whatsapp else None
        by_email = self.by_email.get(row.email) if row.email else None
        if by_email is not None and whatsapp and by_email.values["wa_id"]:
            by_email = None
        if row.external_id:
            found = self.by_external.get(row.external_id)
            if found is None:  # a candidate known without an external id takes this one
                found = next(
                    (c for c in (owner, by_email) if c and not c.values["external_id"]), None
                )
        else:
            found = owner or by_email
        if owner is not None and owner is not found:
            other = owner.values["external_id"]
            column = "wa_id" if row.wa_id else "phone"
            who = f"external_id '{other}'" if other else f"id {owner.id}" if owner.id else ""
            who = who or f"line {owner.line}"
            return RowError(0, column, f"another candidate ({who}) has this number")
        return found


def _merge(candidate: _Candidate, row: CandidateRow) -> bool:
    """Apply a row to a candidate; whether anything changed."""
    values = dict(candidate.values)
    values["name"] = row.name
    for name in ("external_id", "email", "locale", "timezone"):
        if getattr(row, name) is not None:
            values[name] = getattr(row, name)
    if row.whatsapp is not None:
        values["wa_id"] = row.whatsapp
    if row.phone is not None:
        values["phone"] = f"+{row.phone}"
    if row.consent_at is not None:
        values["consent_source"], values["consent_at"] = row.consent_source, row.consent_at
    profile = dict(values["profile"])
    for key, value in row.profile.items():
        if value is not None:
            profile[key] = value
        else:
            profile.setdefault(key, None)  # known to be missing; never erases a value
    values["profile"] = profile
    changed = values != candidate.values
    candidate.values = values
    return changed


def _new(row: CandidateRow) -> _Candidate:
    candidate = _Candidate(
        None,
        dict.fromkeys(FIELDS) | {"locale": DEFAULT_LOCALE, "timezone": DEFAULT_TIMEZONE},
    )
    candidate.values["profile"] = {}
    _merge(candidate, row)
    candidate.touched = True
    return candidate


async def _vacancies(
    session: AsyncSession, rows: Sequence[Row]
) -> tuple[dict[str, int | None], dict[str, str]]:
    """Each row's vacancy → its id (None: to create), and the values that are ambiguous."""
    wanted = {r.data.vacancy for r in rows if r.data.vacancy}
    if not wanted:
        return {}, {}
    found = await repository.vacancies_matching(
        session, external_ids=sorted(wanted), titles=sorted({v.lower() for v in wanted})
    )
    by_external: dict[str, int] = {}
    by_title: dict[str, list[int]] = {}
    for r in found:
        if r.external_id:
            by_external[r.external_id] = r.id
        by_title.setdefault(r.title, []).append(r.id)
    ids: dict[str, int | None] = {}
    ambiguous: dict[str, str] = {}
    for value in wanted:
        titled = by_title.get(value.lower(), [])
        if value in by_external:
            ids[value] = by_external[value]
        elif len(titled) == 1:
            ids[value] = titled[0]
        elif titled:
            ambiguous[value] = f"{len(titled)} vacancies have this title: use its external id"
        else:
            ids[value] = None
    return ids, ambiguous


async def _create_vacancies(
    session: AsyncSession, ids: dict[str, int | None], needed: set[str], report: Report
) -> None:
    """Create the vacancies no row could find: external id and title are the value."""
    for value in sorted(v for v in needed if ids[v] is None):
        vacancy_id, inserted = await repository.add_vacancy_named(session, name=value)
        ids[value] = vacancy_id
        if inserted:
            report.vacancies_created.append(value)


async def _contacts(session: AsyncSession, candidates: list[_Candidate]) -> None:
    """Create or find the WhatsApp contact of each candidate with a number (as ATS events do)."""
    by_whatsapp = {c.values["wa_id"]: c for c in candidates if c.needs_contact()}
    if not by_whatsapp:
        return
    records = [
        {
            "wa_id": wa,
            "profile_name": c.values["name"],
            "locale": c.values["locale"],
            "opted_in_at": c.values["consent_at"],
        }
        for wa, c in by_whatsapp.items()
    ]
    for contact in await repository.upsert_contacts(session, records=records):
        by_whatsapp[contact.wa_id].contact_id = contact.id


async def _write_candidates(
    session: AsyncSession, new: list[_Candidate], changed: list[_Candidate], now: datetime
) -> None:
    """Insert the new candidates (taking their ids) and update the changed ones."""
    ids = await repository.fresh_ids(session, table="candidates", count=len(new))
    for candidate, candidate_id in zip(new, ids, strict=True):
        candidate.id = candidate_id
    writes = ((repository.insert_candidates, new), (repository.update_candidates, changed))
    for write_group, group in writes:
        if group:
            records = [
                c.values
                | {
                    "id": c.id,
                    "contact_id": c.contact_id,
                    "profile": json.dumps(c.values["profile"]),
                }
                for c in group
            ]
            await write_group(session, records=records, now=now)


async def _applications(
    session: AsyncSession,
    wanted: dict[tuple[int, int], str | None],
    existing_candidates: set[int],
    now: datetime,
    report: Report,
) -> None:
    """Create each (candidate, vacancy) application, or move it to the row's stage."""
    current: dict[tuple[int, int], tuple[int, str]] = {}
    pairs = [p for p in wanted if p[0] in existing_candidates]
    if pairs:
        found = await repository.lock_applications(session, pairs=pairs)
        current = {(r.candidate_id, r.vacancy_id): (r.id, r.stage) for r in found}
    new = [(pair, stage or "applied") for pair, stage in wanted.items() if pair not in current]
    ids = await repository.fresh_ids(session, table="applications", count=len(new))
    created = [
        {"id": i, "candidate_id": c, "vacancy_id": v, "stage": stage}
        for i, ((c, v), stage) in zip(ids, new, strict=True)
    ]
    moved = [
        {"id": application_id, "from_stage": was, "stage": wanted[pair]}
        for pair, (application_id, was) in current.items()
        if wanted[pair] is not None and wanted[pair] != was
    ]
    if created:
        await repository.insert_applications(session, records=created, now=now)
    if moved:
        await repository.move_applications(session, records=moved, now=now)
    history = [
        {"application_id": a["id"], "from_stage": a.get("from_stage"), "to_stage": a["stage"]}
        for a in created + moved
    ]
    if history:
        await repository.insert_stage_changes(session, records=history, now=now)
    report.applications_created += len(created)
    report.applications_moved += len(moved)


async def _write_batch(session: AsyncSession, rows: Sequence[Row], source: str) -> Report:
    """Upsert one batch in the session's transaction; row problems go to the report."""
    report = Report()
    now = clock.now()
    vacancy_ids, ambiguous = await _vacancies(session, rows)
    known = await _load(session, rows)
    index = _Index(known)
    new: list[_Candidate] = []
    applying: list[tuple[_Candidate, str, str | None]] = []
    for row in rows:
        data = row.data
        if data.vacancy in ambiguous:
            report.errors.append(RowError(row.line, "vacancy", ambiguous[data.vacancy]))
            continue
        found = index.find(data)
        if isinstance(found, RowError):
            report.errors.append(RowError(row.line, found.column, found.message))
            continue
        if found is None:
            candidate = _new(data)
            candidate.line = row.line
            new.append(candidate)
            report.created += 1
        else:
            candidate = found
            if _merge(candidate, data):
                candidate.touched = True
                report.updated += 1
            else:
                report.unchanged += 1
        index.add(candidate)
        if data.vacancy:
            applying.append((candidate, data.vacancy, data.stage))
    changed = [c for c in known if c.touched]
    await _contacts(session, new + changed)
    await _write_candidates(session, new, changed, now)
    if applying:
        await _create_vacancies(session, vacancy_ids, {v for _, v, _ in applying}, report)
        wanted: dict[tuple[int, int], str | None] = {}
        for candidate, vacancy, stage in applying:
            vacancy_id = vacancy_ids[vacancy]
            assert candidate.id is not None and vacancy_id is not None
            pair = (candidate.id, vacancy_id)
            wanted[pair] = stage if stage is not None else wanted.get(pair)
        await _applications(session, wanted, {c.id for c in known if c.id}, now, report)
    if new or changed:
        await trace.record(
            session,
            conversation_id=None,
            kind=kinds.CANDIDATES_IMPORTED,
            actor=trace.system("import"),
            data={
                "source": source,
                "lines": [rows[0].line, rows[-1].line],
                "created": [c.id for c in new],
                "updated": [c.id for c in changed],
            },
        )
    return report


def _refusal(exc: DBAPIError) -> str:
    detail = str(exc.orig or exc).strip().splitlines()[0]
    return f"the database refused this row: {detail[:300]}"


async def write(
    rows: Sequence[Row],
    *,
    dry_run: bool = False,
    batch_size: int = BATCH,
    source: str = "",
    on_batch: Callable[[int], None] | None = None,
) -> Report:
    """Upsert the rows, `batch_size` per transaction (a dry run rolls everything back).

    When the database refuses a batch (a row breaking a constraint this module did not
    foresee, or a concurrent writer), that batch is retried row by row so only the
    refused rows fail. Other database errors propagate: the batches before stay
    committed, and running the import again finishes it.
    """
    report = Report()
    async with get_sessionmaker()() as session:
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            try:
                async with session.begin_nested():
                    done = await _write_batch(session, batch, source)
                report.add(done)
            except (IntegrityError, DataError):
                for row in batch:
                    try:
                        async with session.begin_nested():
                            done = await _write_batch(session, [row], source)
                        report.add(done)
                    except (IntegrityError, DataError) as exc:
                        report.errors.append(RowError(row.line, "", _refusal(exc)))
            if not dry_run:
                await session.commit()
            if on_batch is not None:
                on_batch(len(batch))
        await session.rollback()
    return report
