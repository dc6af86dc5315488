"""The rules file (`traza.rules.loader`, `traza.rules.schema`) and the routing policy."""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from dataclasses import replace
from datetime import date, time, timedelta
from pathlib import Path

import pytest

from traza.decisions.routing import RouteDecision, RoutingInputs, decide
from traza.rules.loader import LoadedRules, Problem, RulesError, defaults, load_file, parse

SOURCE = "rules.yaml"
KNOWN = {"general", "sales", "vip"}


@pytest.fixture(autouse=True)
def clean_db() -> None:
    """Plain functions: no database (overrides the conftest fixture of the same name)."""


def yml(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based number of the line holding the `occurrence`-th `needle`."""
    found = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(found) >= occurrence, f"{needle!r} not in the text"
    return found[occurrence - 1]


def refused(text: str, known_teams: set[str] | None = None) -> list[Problem]:
    with pytest.raises(RulesError) as info:
        parse(text, source=SOURCE, known_teams=known_teams)
    assert info.value.problems
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return info.value.problems


def only_problem(text: str, known_teams: set[str] | None = None) -> Problem:
    problems = refused(text, known_teams)
    assert len(problems) == 1, problems
    return problems[0]


def load(text: str) -> LoadedRules:
    return parse(yml(text), source=SOURCE)


def inputs(**kw: object) -> RoutingInputs:
    base = RoutingInputs(
        intent="greeting",
        confidence=0.9,
        frustration=False,
        wants_human=False,
        opt_out=False,
        owner="bot",
        opted_out=False,
        unknown_streak=0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


# --- a complete, valid file -------------------------------------------------------------

COMPLETE = yml(
    """
    # Operations rules of the recruiting desk.
    default_team: general
    priorities: [urgent, high, normal, low]
    default_priority: normal

    query_types:
      salary:
        priority: high
      billing:
        priority: low

    teams:
      general:
        hours:
          timezone: Europe/Madrid
          weekly:
            mon: ["09:00-14:00", "16:00-19:00"]
            tue: ["09:00-14:00", "16:00-19:00"]
            wed: ["09:00-14:00", "16:00-19:00"]
            thu: ["09:00-14:00", "16:00-19:00"]
            fri: ["09:00-15:00"]
            sat: ["20:00-24:00"]
          holidays:
            country: ES
            subdivision: MD
            dates: [2026-08-10, 2026-12-24]
        out_of_hours:
          mode: message
          message: Volvemos mañana a las 9.
        priority: normal
      sales:
        priority: low
        out_of_hours: {mode: bot}
      vip: {}

    routing:
      - name: payroll
        when:
          intents: [provide_info, unknown]
          keywords: [nómina, payroll]
        team: sales
        query_type: billing
        reason: payroll question
      - name: vip-contacts
        when: {contacts: ["+34600111222", "+34600333444"]}
        team: vip
        priority: urgent
      - name: support-inbox
        when:
          inboxes: [support]
          max_confidence: 0.5
        bot: support-bot
      - name: crm-hook
        when: {keywords: [crm]}
        action: crm
      - name: stop
        when: {keywords: [darme de baja]}
        action: opt_out
      - name: lost
        when: {intents: [unknown], min_unknown_streak: 3, wants_human: false, frustration: false}
        team: general

    slas:
      - team: general
        priority: high
        first_response: 15m
        next_response: 1h30m
        resolution: 1d
        on_breach:
          first_response: [reassign, escalate]
          resolution:
            - raise_priority
            - notify: helpdesk
      - priority: urgent
        first_response: 300
        on_breach:
          first_response: ["notify:helpdesk", reassign]

    integrations:
      helpdesk:
        url: https://helpdesk.example.com/hooks/traza
        secret_env: HELPDESK_SECRET
        max_attempts: 3
        timeout_seconds: 5
      crm:
        url: https://crm.example.com/in
        secret: s3cr3t
        attach_response: false
        reply: Te contactamos pronto.

    csat:
      enabled: true
      question: ¿Cómo te atendimos?
    """
)


def test_a_complete_file_parses() -> None:
    loaded = parse(COMPLETE, source=SOURCE, known_teams=KNOWN)
    rules = loaded.rules
    assert loaded.source == SOURCE
    assert loaded.text == COMPLETE
    assert rules.default_team == "general"
    assert rules.priorities == ["urgent", "high", "normal", "low"]
    assert rules.default_priority == "normal"

    assert set(rules.query_types) == {"salary", "billing"}
    assert rules.query_types["salary"].priority == "high"
    assert rules.query_types["billing"].priority == "low"

    assert list(rules.teams) == ["general", "sales", "vip"]
    general = rules.teams["general"]
    assert general.hours is not None
    assert general.hours.timezone == "Europe/Madrid"
    assert general.hours.weekly["mon"] == [(time(9), time(14)), (time(16), time(19))]
    assert general.hours.weekly["fri"] == [(time(9), time(15))]
    assert general.hours.weekly["sat"] == [(time(20), time.max)]
    assert "sun" not in general.hours.weekly
    assert general.hours.holidays.country == "ES"
    assert general.hours.holidays.subdivision == "MD"
    assert general.hours.holidays.dates == [date(2026, 8, 10), date(2026, 12, 24)]
    assert general.out_of_hours.mode == "message"
    assert general.out_of_hours.message == "Volvemos mañana a las 9."
    assert general.priority == "normal"
    assert rules.teams["sales"].hours is None
    assert rules.teams["sales"].out_of_hours.mode == "bot"
    assert rules.teams["vip"].priority is None

    assert [r.name for r in rules.routing] == [
        "payroll",
        "vip-contacts",
        "support-inbox",
        "crm-hook",
        "stop",
        "lost",
    ]
    payroll = rules.routing[0]
    assert payroll.when.intents == ["provide_info", "unknown"]
    assert payroll.when.keywords == ["nómina", "payroll"]
    assert (payroll.team, payroll.query_type, payroll.reason) == (
        "sales",
        "billing",
        "payroll question",
    )
    assert rules.routing[1].when.contacts == ["+34600111222", "+34600333444"]
    assert rules.routing[2].when.inboxes == ["support"]
    assert rules.routing[2].when.max_confidence == 0.5
    assert rules.routing[2].bot == "support-bot"
    assert rules.routing[3].action == "crm"
    assert rules.routing[4].action == "opt_out"
    assert rules.routing[5].when.min_unknown_streak == 3
    assert rules.routing[5].when.wants_human is False

    first, second = rules.slas
    assert (first.team, first.priority) == ("general", "high")
    assert first.first_response == timedelta(minutes=15)
    assert first.next_response == timedelta(hours=1, minutes=30)
    assert first.resolution == timedelta(hours=24)
    assert first.on_breach == {
        "first_response": ["reassign", "escalate"],
        "resolution": ["raise_priority", "notify:helpdesk"],
    }
    assert second.team is None
    assert second.first_response == timedelta(seconds=300)
    assert second.next_response is None
    assert second.on_breach == {"first_response": ["notify:helpdesk", "reassign"]}

    helpdesk = rules.integrations["helpdesk"]
    assert str(helpdesk.url) == "https://helpdesk.example.com/hooks/traza"
    assert helpdesk.secret_env == "HELPDESK_SECRET"
    assert helpdesk.secret is None
    assert helpdesk.max_attempts == 3
    assert helpdesk.timeout_seconds == 5
    assert helpdesk.attach_response is True
    crm = rules.integrations["crm"]
    assert crm.secret == "s3cr3t"
    assert crm.attach_response is False
    assert crm.reply == "Te contactamos pronto."

    assert rules.csat.enabled is True
    assert rules.csat.question == "¿Cómo te atendimos?"


def test_references_to_teams_are_only_checked_when_the_teams_are_known() -> None:
    parse(COMPLETE, source=SOURCE)  # no known teams: nothing to check against
    problems = refused(COMPLETE, known_teams={"general"})
    assert {p.message.split("'")[1] for p in problems} == {"sales", "vip"}


def test_version_is_a_hash_of_the_text() -> None:
    loaded = parse(COMPLETE, source=SOURCE)
    assert re.fullmatch(r"[0-9a-f]{12}", loaded.version)
    assert loaded.version == hashlib.sha256(COMPLETE.encode()).hexdigest()[:12]
    assert parse(COMPLETE, source="elsewhere.yaml").version == loaded.version
    changed = COMPLETE.replace("max_attempts: 3", "max_attempts: 4")
    assert parse(changed, source=SOURCE).version != loaded.version
    commented = COMPLETE + "# a comment\n"
    assert parse(commented, source=SOURCE).version != loaded.version


def test_an_empty_file_means_the_defaults_of_each_section() -> None:
    rules = parse("", source=SOURCE).rules
    assert rules.default_team == "general"
    assert rules.priorities == ["urgent", "high", "normal", "low"]
    assert rules.default_priority == "normal"
    assert rules.routing == []
    assert rules.csat.enabled is True


def test_durations_in_every_form() -> None:
    text = yml(
        """
        slas:
          - first_response: 90
            next_response: 2h30m
            resolution: 1d2h
          - first_response: "45s"
        """
    )
    first, second = parse(text, source=SOURCE).rules.slas
    assert first.first_response == timedelta(seconds=90)
    assert first.next_response == timedelta(hours=2, minutes=30)
    assert first.resolution == timedelta(hours=26)
    assert second.first_response == timedelta(seconds=45)


def test_load_file_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(COMPLETE, encoding="utf-8")
    loaded = load_file(path, known_teams=KNOWN)
    assert loaded.source == str(path)
    assert loaded.version == parse(COMPLETE, source=SOURCE).version


def test_load_file_names_the_file_in_problems(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    text = "default_priority: medium\n"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RulesError) as info:
        load_file(path)
    (problem,) = info.value.problems
    assert problem.file == str(path)
    assert str(problem).startswith(f"{path}:1: default_priority: unknown priority 'medium'")


def test_load_file_on_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "rules.yaml"
    with pytest.raises(RulesError) as info:
        load_file(path)
    (problem,) = info.value.problems
    assert problem.file == str(path)
    assert problem.line is None
    assert "cannot read" in problem.message
    assert str(path) in str(info.value)


def test_load_file_on_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes("default_team: años\n".encode("latin-1"))
    with pytest.raises(RulesError) as info:
        load_file(path)
    (problem,) = info.value.problems
    assert problem.file == str(path)
    assert "UTF-8" in problem.message


# --- bad files: the line and the problem ------------------------------------------------

HOURS_HEAD = """
    teams:
      general:
        hours:
          timezone: Europe/Madrid
          weekly:
"""

BAD_FILES = [
    pytest.param(
        HOURS_HEAD
        + """
            mon: ["09:00-14:00"]
        priority: 3
    """,
        "priority: 3",
        "teams.general.priority",
        ["valid string"],
        id="wrong-type-team-priority",
    ),
    pytest.param(
        """
    integrations:
      helpdesk:
        url: https://helpdesk.example.com/hooks
        secret_env: HELPDESK_SECRET
        max_attempts: "many"
    """,
        "max_attempts",
        "integrations.helpdesk.max_attempts",
        ["valid integer"],
        id="wrong-type-max-attempts",
    ),
    pytest.param(
        """
    integrations:
      helpdesk:
        url: https://helpdesk.example.com/hooks
        secret_env: HELPDESK_SECRET
        max_attempts: 50
    """,
        "max_attempts",
        "integrations.helpdesk.max_attempts",
        ["20"],
        id="out-of-bounds-max-attempts",
    ),
    pytest.param(
        """
    csat:
      enabled: maybe
    """,
        "enabled",
        "csat.enabled",
        ["valid boolean"],
        id="wrong-type-boolean",
    ),
    pytest.param(
        """
    routing:
      - name: payroll
        when: {keywords: [nomina]}
        team: general
        prioridad: high
    """,
        "prioridad",
        "routing[0].prioridad",
        ["unknown field"],
        id="unknown-field-typo",
    ),
    pytest.param(
        HOURS_HEAD
        + """
            mon: ["09:00-14:00"]
        capacity: 5
    """,
        "capacity",
        "teams.general.capacity",
        ["unknown field"],
        id="unknown-field-capacity",
    ),
    pytest.param(
        """
    teams:
      general:
        hours:
          timezone: Mars/Base
          weekly:
            mon: ["09:00-14:00"]
    """,
        "Mars/Base",
        "teams.general.hours.timezone",
        ["unknown time zone 'Mars/Base'", "IANA"],
        id="unknown-time-zone",
    ),
    pytest.param(
        HOURS_HEAD
        + """
            mon:
              - "09:00-14:00"
              - "16:00-15:00"
    """,
        "16:00-15:00",
        "teams.general.hours.weekly.mon[1]",
        ["ends before it starts", "16:00-15:00"],
        id="range-ending-before-start",
    ),
    pytest.param(
        HOURS_HEAD
        + """
            mon: ["09:00-14:00"]
            tue: ["22:00-02:00"]
    """,
        "22:00-02:00",
        "teams.general.hours.weekly.tue[0]",
        ["cannot cross midnight"],
        id="range-crossing-midnight",
    ),
    pytest.param(
        HOURS_HEAD
        + """
            mon: ["09:00-14:00", "25:00-26:00"]
    """,
        "25:00",
        "teams.general.hours.weekly.mon[1]",
        ["not a time of day"],
        id="not-a-time-of-day",
    ),
    pytest.param(
        HOURS_HEAD
        + """
            mon: ["9 to 14"]
    """,
        "9 to 14",
        "teams.general.hours.weekly.mon[0]",
        ["09:00-14:00"],
        id="not-a-range",
    ),
    pytest.param(
        HOURS_HEAD
        + """
            monday: ["09:00-14:00"]
    """,
        "monday",
        "teams.general.hours.weekly.monday",
        ["'mon'"],
        id="unknown-weekday",
    ),
    pytest.param(
        HOURS_HEAD
        + """
            mon: []
    """,
        "hours:",
        "teams.general.hours",
        ["no open range"],
        id="no-open-range",
    ),
    pytest.param(
        """
    routing:
      - name: vip
        when: {contacts: ["+34600111222"]}
        team: general
        priority: critical
    """,
        "critical",
        "routing[0].priority",
        ["unknown priority 'critical'"],
        id="unknown-priority-in-rule",
    ),
    pytest.param(
        """
    priorities: [high, normal]
    default_priority: medium
    """,
        "medium",
        "default_priority",
        ["unknown priority 'medium'"],
        id="unknown-default-priority",
    ),
    pytest.param(
        """
    priorities: [high, normal, high]
    default_priority: normal
    """,
        "priorities",
        "priorities",
        ["twice"],
        id="priority-listed-twice",
    ),
    pytest.param(
        """
    integrations:
      helpdesk:
        url: https://helpdesk.example.com/hooks
        secret_env: HELPDESK_SECRET
    slas:
      - team: general
        first_response: 15m
        on_breach:
          first_response:
            - reassign
            - notify: pagerduty
    """,
        "pagerduty",
        "slas[0].on_breach.first_response[1]",
        ["unknown integration 'pagerduty'"],
        id="unknown-integration-in-notify",
    ),
    pytest.param(
        """
    slas:
      - team: general
        on_breach:
          resolution: [reassign, panic]
    """,
        "panic",
        "slas[0].on_breach.resolution[1]",
        ["unknown breach action 'panic'"],
        id="unknown-breach-action",
    ),
    pytest.param(
        """
    slas:
      - team: general
        on_breach:
          first_reply: [reassign]
    """,
        "first_reply",
        "slas[0].on_breach.first_reply",
        ["first_response"],
        id="unknown-breach-metric",
    ),
    pytest.param(
        """
    slas:
      - team: general
        first_response: 15m
        resolution: soon
    """,
        "soon",
        "slas[0].resolution",
        ["'15m'"],
        id="bad-duration",
    ),
    pytest.param(
        """
    slas:
      - team: general
        first_response: 0
    """,
        "first_response",
        "slas[0].first_response",
        ["positive"],
        id="zero-duration",
    ),
    pytest.param(
        """
    routing:
      - name: ok
        when: {intents: [salary]}
        team: general
      - name: both
        when: {intents: [greeting]}
        team: general
        bot: faq-bot
    """,
        "name: both",
        "routing[1]",
        ["exactly one of 'bot', 'team' or 'action'"],
        id="rule-with-two-targets",
    ),
    pytest.param(
        """
    routing:
      - name: nowhere
        when: {intents: [greeting]}
        reason: forgot the target
    """,
        "name: nowhere",
        "routing[0]",
        ["exactly one of 'bot', 'team' or 'action'"],
        id="rule-with-no-target",
    ),
    pytest.param(
        """
    routing:
      - name: weather
        when:
          intents:
            - greeting
            - weather
        bot: faq-bot
    """,
        "- weather",
        "routing[0].when.intents[1]",
        ["unknown intent 'weather'"],
        id="unknown-intent",
    ),
    pytest.param(
        """
    routing:
      - name: ping
        when: {keywords: [ping]}
        action: slack
    """,
        "slack",
        "routing[0].action",
        ["unknown action 'slack'"],
        id="unknown-action",
    ),
    pytest.param(
        """
    routing:
      - name: ""
        team: general
    """,
        "name:",
        "routing[0].name",
        ["at least 1 character"],
        id="empty-rule-name",
    ),
    pytest.param(
        """
    integrations:
      helpdesk:
        url: https://helpdesk.example.com/hooks
        secret_env: HELPDESK_SECRET
        secret: also-here
    """,
        "helpdesk:",
        "integrations.helpdesk",
        ["exactly one of 'secret_env' or 'secret'"],
        id="integration-with-two-secrets",
    ),
    pytest.param(
        """
    integrations:
      helpdesk:
        url: not a url
        secret_env: HELPDESK_SECRET
    """,
        "not a url",
        "integrations.helpdesk.url",
        ["URL"],
        id="integration-bad-url",
    ),
    pytest.param(
        HOURS_HEAD
        + """
            mon: ["09:00-14:00"]
          holidays:
            subdivision: MD
    """,
        "subdivision: MD",
        "teams.general.hours.holidays.subdivision",
        ["subdivision needs a country"],
        id="subdivision-without-country",
    ),
]


@pytest.mark.parametrize(("text", "needle", "where", "fragments"), BAD_FILES)
def test_a_bad_file_is_refused_with_its_line(
    text: str, needle: str, where: str, fragments: list[str]
) -> None:
    text = yml(text)
    problem = only_problem(text)
    assert problem.file == SOURCE
    assert problem.line == line_of(text, needle)
    assert problem.where == where
    for fragment in fragments:
        assert fragment in problem.message
    assert str(problem) == f"{SOURCE}:{problem.line}: {where}: {problem.message}"


def test_duplicate_rule_name_points_at_the_second_use() -> None:
    text = yml(
        """
        routing:
          - name: same
            when: {intents: [salary]}
            team: general
          - name: other
            when: {intents: [interview]}
            team: general
          - name: same
            when: {intents: [job_info]}
            bot: faq-bot
        """
    )
    problem = only_problem(text)
    assert problem.line == line_of(text, "name: same", occurrence=2) == 8
    assert problem.where == "routing[2].name"
    assert "rule name 'same' is used twice" in problem.message
    assert str(problem).startswith(f"{SOURCE}:8: routing[2].name: ")


def test_unknown_team_names_the_team_and_how_to_add_it() -> None:
    text = yml(
        """
        default_team: general
        routing:
          - name: payroll
            when: {keywords: [nomina]}
            team: payroll-team
        """
    )
    problem = only_problem(text, known_teams={"general", "sales"})
    assert problem.line == line_of(text, "team: payroll-team")
    assert problem.where == "routing[0].team"
    assert "unknown team 'payroll-team'" in problem.message
    assert "general, sales" in problem.message
    assert "traza teams add payroll-team" in problem.message
    assert str(problem).startswith(f"{SOURCE}:{problem.line}: ")


@pytest.mark.parametrize(
    ("text", "needle", "where"),
    [
        ("default_team: support\n", "support", "default_team"),
        ("teams:\n  general: {}\n  support: {}\n", "support", "teams.support"),
        ("slas:\n  - team: support\n    first_response: 1h\n", "support", "slas[0].team"),
    ],
)
def test_unknown_team_in_every_section(text: str, needle: str, where: str) -> None:
    problem = only_problem(text, known_teams={"general"})
    assert problem.line == line_of(text, needle)
    assert problem.where == where
    assert "unknown team 'support'" in problem.message
    assert "traza teams add support" in problem.message


def test_overlapping_ranges() -> None:
    text = yml(
        HOURS_HEAD
        + """
            mon: ["09:00-14:00"]
            tue: ["09:00-14:00", "13:00-19:00"]
        """
    )
    problem = only_problem(text)
    assert "overlap" in problem.message
    assert "13:00" in problem.message
    assert problem.where == "teams.general.hours.weekly.tue"
    assert str(problem).startswith(f"{SOURCE}:{problem.line}: teams.general.hours.weekly.tue: ")
    # The line of the day whose ranges overlap, not the line of `weekly:`.
    assert problem.line == line_of(text, "tue:")


def test_touching_ranges_do_not_overlap() -> None:
    text = yml(HOURS_HEAD + '            mon: ["14:00-19:00", "09:00-14:00"]\n')
    hours = parse(text, source=SOURCE).rules.teams["general"].hours
    assert hours is not None
    assert hours.weekly["mon"] == [(time(9), time(14)), (time(14), time(19))]  # sorted


def test_unknown_holiday_country() -> None:
    text = yml(
        HOURS_HEAD
        + """
            mon: ["09:00-14:00"]
          holidays:
            country: XX
        """
    )
    problem = only_problem(text)
    assert "XX" in problem.message
    assert "no public holidays known for country 'XX'" in problem.message
    # The line of the unknown country, not the line of `holidays:`.
    assert problem.line == line_of(text, "country: XX")


def test_unknown_holiday_subdivision() -> None:
    text = yml(
        HOURS_HEAD
        + """
            mon: ["09:00-14:00"]
          holidays:
            country: ES
            subdivision: XX
        """
    )
    problem = only_problem(text)
    assert "unknown subdivision 'XX' of ES" in problem.message
    assert problem.line == line_of(text, "subdivision: XX")


def test_invalid_yaml_names_the_line() -> None:
    text = yml(
        """
        default_team: general
        priorities: [urgent, high, normal, low]
        default_priority: normal: high
        routing: []
        """
    )
    problem = only_problem(text)
    assert problem.line == 3
    assert problem.message.startswith("not valid YAML")
    assert "mapping values are not allowed" in problem.message
    assert str(problem).startswith(f"{SOURCE}:3: not valid YAML")


def test_invalid_yaml_unclosed_flow_sequence() -> None:
    text = yml(
        """
        routing:
          - name: a
            when: {intents: [salary}
            team: general
        """
    )
    problem = only_problem(text)
    assert problem.line == line_of(text, "[salary}")
    assert problem.message.startswith("not valid YAML")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_the_top_level_must_be_a_mapping(text: str) -> None:
    problem = only_problem(text)
    assert problem.line == 1
    assert "must be a mapping" in problem.message
    assert str(problem).startswith(f"{SOURCE}:1: ")


def test_every_problem_is_reported_with_its_own_line() -> None:
    text = yml(
        """
        default_priority: medium
        teams:
          general:
            hours:
              timezone: Mars/Base
              weekly:
                mon: ["09:00-14:00"]
            colour: blue
        integrations:
          helpdesk:
            url: https://helpdesk.example.com
            secret_env: X
            max_attempts: "many"
        """
    )
    problems = refused(text)
    by_where = {p.where: p for p in problems}
    assert set(by_where) == {
        "teams.general.hours.timezone",
        "teams.general.colour",
        "integrations.helpdesk.max_attempts",
    }
    assert by_where["teams.general.hours.timezone"].line == line_of(text, "Mars/Base")
    assert by_where["teams.general.colour"].line == line_of(text, "colour")
    assert by_where["integrations.helpdesk.max_attempts"].line == line_of(text, "many")
    for p in problems:
        assert str(p).startswith(f"{SOURCE}:{p.line}: ")
        assert str(p) in str(RulesError(problems))


def test_a_typo_of_a_required_field_reports_both_sides() -> None:
    text = yml(HOURS_HEAD.replace("timezone", "timezon") + '            mon: ["09:00-14:00"]\n')
    problems = {p.where: p for p in refused(text)}
    assert problems["teams.general.hours.timezon"].line == line_of(text, "timezon")
    assert "unknown field" in problems["teams.general.hours.timezon"].message
    assert problems["teams.general.hours.timezone"].line == line_of(text, "hours:")
    assert "required" in problems["teams.general.hours.timezone"].message


def test_problem_str_without_a_line_or_a_place() -> None:
    assert str(Problem("rules.yaml", None, "", "cannot read")) == "rules.yaml: cannot read"
    assert str(Problem("rules.yaml", 7, "", "bad")) == "rules.yaml:7: bad"
    assert str(Problem("rules.yaml", 7, "csat", "bad")) == "rules.yaml:7: csat: bad"


# --- routing: built-in rules ------------------------------------------------------------

CATCH_ALL = load(
    """
    routing:
      - name: everything
        when: {}
        team: general
        reason: catch-all
    """
)


def test_a_rule_with_no_conditions_always_matches() -> None:
    decision = decide(inputs(), CATCH_ALL)
    assert (decision.route, decision.rule, decision.team) == ("human", "everything", "general")
    assert decision.reason == "catch-all"


def test_opt_out_beats_everything() -> None:
    decision = decide(
        inputs(
            opt_out=True,
            payload="csat:5",
            owner="human",
            wants_human=True,
            frustration=True,
            intent="salary",
        ),
        CATCH_ALL,
    )
    assert decision.route == "system"
    assert decision.rule == "opt-out"
    assert decision.action == "opt_out"
    assert decision.team is None
    assert decision.priority is None
    assert decision.rules_version == CATCH_ALL.version


def test_csat_answer_beats_a_human_owner() -> None:
    decision = decide(inputs(payload="csat:4", owner="human", wants_human=True), CATCH_ALL)
    assert (decision.route, decision.rule, decision.action) == ("system", "csat-answer", "csat")
    assert decision.rules_version == CATCH_ALL.version


@pytest.mark.parametrize("payload", ["csat", "rating:5", "x-csat:5", ""])
def test_only_a_csat_prefixed_payload_is_a_csat_answer(payload: str) -> None:
    assert decide(inputs(payload=payload), CATCH_ALL).rule == "everything"
    assert decide(inputs(payload=payload, owner="human"), CATCH_ALL).rule == "human-owner"


def test_human_owner_beats_configured_rules() -> None:
    decision = decide(inputs(owner="human", wants_human=True), CATCH_ALL)
    assert decision.route == "human"
    assert decision.rule == "human-owner"
    assert decision.action is None
    assert decision.rules_version == CATCH_ALL.version


def test_builtin_rules_apply_with_no_configured_rules() -> None:
    empty = parse("", source=SOURCE)
    assert decide(inputs(opt_out=True), empty).rule == "opt-out"
    assert decide(inputs(payload="csat:1"), empty).rule == "csat-answer"
    assert decide(inputs(owner="human"), empty).rule == "human-owner"
    assert decide(inputs(), empty).rule == "default-bot"


# --- routing: configured rules ----------------------------------------------------------


def two_rules(first: str, second: str) -> LoadedRules:
    rules = {
        "salary": "  - name: salary\n    when: {intents: [salary]}\n    team: sales\n",
        "sueldo": "  - name: sueldo\n    when: {keywords: [sueldo]}\n    team: vip\n",
    }
    return parse("routing:\n" + rules[first] + rules[second], source=SOURCE)


def test_first_matching_rule_in_file_order_wins() -> None:
    both = inputs(intent="salary", text="¿Cuál es el sueldo?")
    decision = decide(both, two_rules("salary", "sueldo"))
    assert (decision.rule, decision.team) == ("salary", "sales")
    decision = decide(both, two_rules("sueldo", "salary"))
    assert (decision.rule, decision.team) == ("sueldo", "vip")
    # Only one matches: order does not matter.
    only_keyword = inputs(intent="greeting", text="¿Cuál es el sueldo?")
    assert decide(only_keyword, two_rules("salary", "sueldo")).rule == "sueldo"


KEYWORDS = load(
    """
    routing:
      - name: payroll
        when: {keywords: [nomina, horas extra]}
        team: general
      - name: accented
        when: {keywords: [despido, "baja médica"]}
        team: vip
    """
)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("Mi Nómina no ha llegado", "payroll"),
        ("NÓMINA", "payroll"),
        ("nomina?", "payroll"),
        ("¿y la nómina de marzo?", "payroll"),
        ("Es un valor nominal", "default-bot"),
        ("nominas", "default-bot"),
        ("sobrenomina", "default-bot"),
        ("Las HORAS   Extra de enero", "payroll"),
        ("horas extras", "default-bot"),
        ("estoy de BAJA MEDICA", "accented"),
        ("Estoy de baja médica", "accented"),
        ("baja", "default-bot"),
        ("", "default-bot"),
    ],
)
def test_keywords_match_whole_words_ignoring_case_and_accents(text: str, rule: str) -> None:
    assert decide(inputs(text=text), KEYWORDS).rule == rule


@pytest.mark.parametrize("keywords", ["[]", '[""]', '["   "]', '[nomina, ""]'])
def test_an_empty_keyword_is_not_a_catch_all(keywords: str) -> None:
    # Either the file is refused at the keywords line, or the empty keyword matches nothing:
    # it must not match any text that merely holds punctuation (or no text at all).
    text = f"routing:\n  - name: k\n    when: {{keywords: {keywords}}}\n    team: general\n"
    try:
        loaded = parse(text, source=SOURCE)
    except RulesError as exc:
        assert [p.line for p in exc.problems] == [3]
        return
    for said in ("hola!", "", "¿qué tal?", "ok."):
        assert decide(inputs(text=said), loaded).rule == "default-bot", said


WHO_AND_WHERE = load(
    """
    routing:
      - name: vip-on-support
        when: {contacts: ["+34600111222"], inboxes: [support]}
        team: vip
      - name: vip
        when: {contacts: ["+34600111222", "+34600333444"]}
        team: general
      - name: support-inbox
        when: {inboxes: [support]}
        bot: support-bot
    """
)


@pytest.mark.parametrize(
    ("contact", "inbox", "rule"),
    [
        ("+34600111222", "support", "vip-on-support"),
        ("+34600111222", "sales", "vip"),
        ("+34600333444", "support", "vip"),
        ("+34600333444", None, "vip"),
        ("+34699999999", "support", "support-inbox"),
        (None, "support", "support-inbox"),
        ("+34699999999", "sales", "default-bot"),
        (None, None, "default-bot"),
    ],
)
def test_contact_and_inbox_conditions(contact: str | None, inbox: str | None, rule: str) -> None:
    assert decide(inputs(contact=contact, inbox=inbox), WHO_AND_WHERE).rule == rule


STREAKS = load(
    """
    routing:
      - name: lost
        when: {intents: [unknown], min_unknown_streak: 3}
        team: general
      - name: unsure
        when: {max_confidence: 0.5}
        bot: careful-bot
      - name: calm-person
        when: {wants_human: true, frustration: false}
        team: general
      - name: angry-person
        when: {wants_human: true, frustration: true}
        team: vip
    """
)


@pytest.mark.parametrize(
    ("streak", "rule"), [(0, "default-bot"), (2, "default-bot"), (3, "lost"), (7, "lost")]
)
def test_min_unknown_streak(streak: int, rule: str) -> None:
    assert decide(inputs(intent="unknown", unknown_streak=streak), STREAKS).rule == rule


def test_min_unknown_streak_needs_the_intent_too() -> None:
    assert decide(inputs(intent="greeting", unknown_streak=5), STREAKS).rule == "default-bot"


@pytest.mark.parametrize(
    ("confidence", "rule"), [(0.2, "unsure"), (0.5, "unsure"), (0.51, "default-bot")]
)
def test_max_confidence(confidence: float, rule: str) -> None:
    assert decide(inputs(confidence=confidence), STREAKS).rule == rule


def test_boolean_conditions_must_equal_the_input() -> None:
    assert decide(inputs(wants_human=True), STREAKS).rule == "calm-person"
    assert decide(inputs(wants_human=True, frustration=True), STREAKS).rule == "angry-person"
    assert decide(inputs(frustration=True), STREAKS).rule == "default-bot"


def test_min_unknown_streak_must_be_positive() -> None:
    text = "routing:\n  - name: x\n    when: {min_unknown_streak: 0}\n    team: general\n"
    problem = only_problem(text)
    assert problem.where == "routing[0].when.min_unknown_streak"
    assert problem.line == 3


# --- routing: priority, query type and targets ------------------------------------------

PRIORITIES = load(
    """
    priorities: [urgent, high, normal, low]
    default_priority: low
    query_types:
      salary: {priority: high}
      interview: {}
      billing: {priority: urgent}
    teams:
      sales: {priority: normal}
      general: {}
    routing:
      - name: explicit
        when: {intents: [salary], keywords: [urgente]}
        team: sales
        priority: urgent
      - name: by-query-type
        when: {intents: [salary]}
        team: sales
      - name: by-team
        when: {intents: [interview]}
        team: sales
      - name: by-default
        when: {intents: [job_info]}
        team: general
      - name: unlisted-team
        when: {intents: [goodbye]}
        team: elsewhere
      - name: rule-query-type
        when: {intents: [application_status]}
        team: general
        query_type: billing
      - name: free-query-type
        when: {intents: [provide_info]}
        team: general
        query_type: documents
      - name: faq
        when: {intents: [salary, thanks]}
        bot: faq-bot
    """
)


@pytest.mark.parametrize(
    ("intent", "text", "rule", "priority", "query_type"),
    [
        # rule.priority beats the query type's and the team's
        ("salary", "es urgente", "explicit", "urgent", "salary"),
        # then query_types[intent].priority beats the team's
        ("salary", "hola", "by-query-type", "high", "salary"),
        # a query type without priority: the team's
        ("interview", "", "by-team", "normal", "interview"),
        # no query type and a team without priority: the default priority
        ("job_info", "", "by-default", "low", None),
        ("goodbye", "", "unlisted-team", "low", None),
        # the rule's query_type beats the intent for the query type and its priority
        ("application_status", "", "rule-query-type", "urgent", "billing"),
        ("provide_info", "", "free-query-type", "low", "documents"),
    ],
)
def test_priority_resolution(
    intent: str, text: str, rule: str, priority: str, query_type: str | None
) -> None:
    decision = decide(inputs(intent=intent, text=text), PRIORITIES)
    assert decision.rule == rule
    assert decision.route == "human"
    assert decision.priority == priority
    assert decision.query_type == query_type
    assert decision.action is None
    assert decision.bot is None


def test_bot_rule_routes_to_the_named_bot() -> None:
    decision = decide(inputs(intent="thanks"), PRIORITIES)
    assert decision.route == "bot"
    assert decision.rule == "faq"
    assert decision.bot == "faq-bot"
    assert decision.team is None
    assert decision.priority is None
    assert decision.action is None
    assert decision.reason == "rule 'faq' matched"


ACTIONS = load(
    """
    integrations:
      crm:
        url: https://crm.example.com/in
        secret_env: CRM_SECRET
    routing:
      - name: stop
        when: {keywords: [darme de baja]}
        action: opt_out
        reason: stop words
      - name: crm-lead
        when: {keywords: [crm]}
        action: crm
    """
)


def test_action_rules_route_to_the_system() -> None:
    decision = decide(inputs(text="Quiero darme de baja"), ACTIONS)
    assert (decision.route, decision.rule, decision.action) == ("system", "stop", "opt_out")
    assert decision.reason == "stop words"
    assert decision.team is None
    assert decision.bot is None
    assert decision.priority is None
    decision = decide(inputs(text="alta en el CRM"), ACTIONS)
    assert (decision.route, decision.rule, decision.action) == ("system", "crm-lead", "crm")


def test_no_match_is_the_default_bot() -> None:
    decision = decide(inputs(text="hola"), ACTIONS)
    assert decision.route == "bot"
    assert decision.rule == "default-bot"
    assert decision.action is None
    assert decision.team is None
    assert decision.bot is None
    assert decision.priority is None
    assert decision.query_type is None


@pytest.mark.parametrize(
    "kw",
    [{}, {"opt_out": True}, {"payload": "csat:3"}, {"owner": "human"}, {"text": "darme de baja"}],
)
def test_every_decision_records_the_rules_version(kw: dict[str, object]) -> None:
    decision = decide(inputs(**kw), ACTIONS)
    assert decision.rules_version == ACTIONS.version
    other = parse(ACTIONS.text + "# edited\n", source=SOURCE)
    assert decide(inputs(**kw), other).rules_version == other.version != ACTIONS.version


def test_decision_as_dict_omits_the_text() -> None:
    i = inputs(text="Mi nómina", contact="+34600111222", inbox="support", payload="b:1")
    decision = decide(i, KEYWORDS)
    assert decision.inputs["text"] == "Mi nómina"
    data = decision.as_dict()
    assert "text" not in data["inputs"]
    assert data["inputs"] == {
        "intent": "greeting",
        "confidence": 0.9,
        "frustration": False,
        "wants_human": False,
        "opt_out": False,
        "owner": "bot",
        "opted_out": False,
        "unknown_streak": 0,
        "contact": "+34600111222",
        "inbox": "support",
        "payload": "b:1",
        "negotiation": False,
        "out_of_scope": False,
        "uncertain": False,
        "opt_out_mode": None,
        "opt_in": False,
        "scores": {},
        "model": None,
    }
    assert data["rule"] == "payroll"
    assert data["route"] == "human"
    assert data["team"] == "general"
    assert data["rules_version"] == KEYWORDS.version
    json.dumps(data)
    assert decision.inputs["text"] == "Mi nómina"  # as_dict does not change the decision
    assert RouteDecision(**{**data, "inputs": decision.inputs}) == decision


# --- the built-in defaults --------------------------------------------------------------


def test_defaults_load() -> None:
    loaded = defaults()
    assert loaded.source == "built-in defaults"
    assert re.fullmatch(r"[0-9a-f]{12}", loaded.version)
    assert [r.name for r in loaded.rules.routing] == [
        "asks-for-person",
        "frustration",
        "negotiation",
        "out-of-scope",
        "not-understood-twice",
    ]
    assert defaults() is loaded
    parse(loaded.text, source="copy.yaml", known_teams={"general"})


def test_defaults_asks_for_person() -> None:
    decision = decide(inputs(wants_human=True), defaults())
    assert (decision.route, decision.team, decision.rule) == ("human", "general", "asks-for-person")
    assert decision.priority == "normal"
    assert decision.reason == "customer asked for a person"
    # A person is asked for and the customer is angry: the first rule wins.
    decision = decide(inputs(wants_human=True, frustration=True, intent="salary"), defaults())
    assert decision.rule == "asks-for-person"


def test_defaults_frustration() -> None:
    decision = decide(inputs(frustration=True, intent="salary"), defaults())
    assert (decision.route, decision.team, decision.rule) == ("human", "general", "frustration")
    assert decision.priority == "high"


def test_defaults_negotiation() -> None:
    decision = decide(inputs(intent="salary"), defaults())
    assert (decision.route, decision.team, decision.rule) == ("human", "general", "negotiation")
    assert decision.priority == "normal"


def test_defaults_out_of_scope_on_the_first_turn_and_after_two_unknown_turns() -> None:
    decision = decide(inputs(out_of_scope=True), defaults())
    assert (decision.route, decision.team, decision.rule) == ("human", "general", "out-of-scope")
    decision = decide(inputs(intent="unknown", unknown_streak=2), defaults())
    assert (decision.route, decision.team, decision.rule) == (
        "human",
        "general",
        "not-understood-twice",
    )
    assert decide(inputs(intent="unknown", unknown_streak=3), defaults()).rule == (
        "not-understood-twice"
    )
    decision = decide(inputs(intent="unknown", unknown_streak=1), defaults())
    assert (decision.route, decision.rule) == ("bot", "default-bot")


def test_defaults_otherwise_the_bot() -> None:
    for intent in ("greeting", "application_status", "interview", "job_info"):
        decision = decide(inputs(intent=intent), defaults())
        assert (decision.route, decision.rule) == ("bot", "default-bot")


def test_decide_without_rules_uses_the_defaults() -> None:
    decision = decide(inputs(intent="salary"))
    assert decision.rule == "negotiation"
    assert decision.rules_version == defaults().version
