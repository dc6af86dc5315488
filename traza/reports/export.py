"""Reports as CSV: one row per day (when grouped) and a `total` row; one column per figure."""

from __future__ import annotations

import csv
import io
from typing import Any

BASE_COLUMNS = (
    "period",
    "from",
    "to",
    "conversations_started",
    "conversations_active",
    "bot_resolved",
    "handed_off",
    "other",
    "messages_in",
    "messages_out",
    "messages_out_bot",
    "messages_out_human",
    "messages_out_system",
    "messages_out_not_sent",
    "handoffs",
    "first_response_count",
    "first_response_median_seconds",
    "first_response_p90_seconds",
    "first_response_mean_seconds",
    "resolution_count",
    "resolution_median_seconds",
    "resolution_p90_seconds",
    "resolution_mean_seconds",
    "sla_met",
    "sla_breached",
    "sla_hit_rate",
    "csat_count",
    "csat_average",
    "csat_1",
    "csat_2",
    "csat_3",
    "csat_4",
    "csat_5",
)


def _row(label: str, start: str, end: str, f: dict[str, Any]) -> dict[str, Any]:
    c, m, h, s, r = f["conversations"], f["messages"], f["handoffs"], f["sla"], f["csat"]
    row: dict[str, Any] = {
        "period": label,
        "from": start,
        "to": end,
        "conversations_started": c["started"],
        "conversations_active": c["active"],
        "bot_resolved": c["bot_resolved"],
        "handed_off": c["handed_off"],
        "other": c["other"],
        "messages_in": m["in"],
        "messages_out": m["out"],
        "messages_out_bot": m["out_by_sender"]["bot"],
        "messages_out_human": m["out_by_sender"]["human"],
        "messages_out_system": m["out_by_sender"]["system"],
        "messages_out_not_sent": m["out_not_sent"],
        "handoffs": h["created"],
        "sla_met": s["met"],
        "sla_breached": s["breached"],
        "sla_hit_rate": s["hit_rate"],
        "csat_count": r["count"],
        "csat_average": r["average"],
    }
    for name in ("first_response", "resolution"):
        for key in ("count", "median_seconds", "p90_seconds", "mean_seconds"):
            row[f"{name}_{key}"] = f[name][key]
    for rating, n in r["distribution"].items():
        row[f"csat_{rating}"] = n
    for reason, n in h["by_reason"].items():
        row[f"handoff_reason:{reason}"] = n
    return row


def _write(columns: list[str], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, restval=0, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def conversation_report_csv(report: dict[str, Any]) -> str:
    """The report as CSV: a row per day (if grouped), then the `total` row.

    Handoff reasons are columns `handoff_reason:<rule>` (0 where a day had none).
    """
    period = report["period"]
    rows = [_row(d["day"], d["from"], d["to"], d) for d in report.get("days", [])]
    rows.append(_row("total", period["from"], period["to"], report["totals"]))
    reasons = sorted({k for row in rows for k in row if k.startswith("handoff_reason:")})
    return _write([*BASE_COLUMNS, *reasons], rows)


MONITOR_COLUMNS = ["section", "at", "candidate", "item", "state", "value"]


def monitor_csv(monitor: dict[str, Any]) -> str:
    """A follow-up agent's monitor as CSV: its figures, recent activity, escalated cases.

    `section` is `figure` (item = the figure's name, value), `activity` (at, candidate,
    item = the activity line, state = the follow-up's or case's status) or `case`.
    """
    rows: list[dict[str, Any]] = []
    for name in (
        "messages_sent",
        "sent_on_whatsapp",
        "opened",
        "open_rate",
        "answered",
        "reply_rate",
        "escalations",
        "satisfaction",
        "ratings",
        "scheduled",
        "paused",
        "not_sent",
    ):
        rows.append({"section": "figure", "item": name, "value": monitor.get(name)})
    for a in monitor["recent_activity"]:
        rows.append(
            {
                "section": "activity",
                "at": a["at"].isoformat(),
                "candidate": a["candidate"],
                "item": a["line"],
                "state": a["status"],
            }
        )
    for c in monitor["escalated_cases"]:
        rows.append(
            {
                "section": "case",
                "at": c["created_at"].isoformat(),
                "candidate": c["candidate"],
                "item": c["description"],
                "state": c["state"],
            }
        )
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=MONITOR_COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()
