"""Reports: what happened in a period, computed from the tables the trace is made of.

`conversations` — conversations, messages, handoffs, response and resolution times in
business hours, SLA outcomes and CSAT, for an inbox, a team, a human agent or a bot.
`monitor` — the seed's follow-up agent monitor. `period` parses and checks what the
caller asked for; `export` turns a report into CSV.
"""
