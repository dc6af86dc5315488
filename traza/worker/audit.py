"""The daily audit anchor: the chain heads that moved since yesterday, sealed together."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from traza import trace
from traza.audit import trail
from traza.db.queue import OPS_QUEUE, app

log = logging.getLogger(__name__)


@app.periodic(cron="5 0 * * *", periodic_id="audit-anchor")
@app.task(name="audit_anchor", queue=OPS_QUEUE, queueing_lock="audit-anchor")
async def anchor_daily(timestamp: int) -> None:
    """Just after midnight UTC: anchor what was written up to then, labelled with that day."""
    day = (datetime.fromtimestamp(timestamp, UTC) - timedelta(days=1)).date()
    result = await trail.write_anchor(created_by=trace.system("audit"), day=day)
    log.info(
        "audit anchor %s for %s: %d chains, %d new events",
        result.anchor.id,
        day,
        result.anchor.chains,
        result.anchor.events,
    )
