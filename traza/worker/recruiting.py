"""Jobs of the follow-up agent: one per planned follow-up, re-checked when it fires."""

from __future__ import annotations

import logging

from procrastinate import JobContext

from traza.db.queue import OPS_QUEUE, app
from traza.recruiting import followups
from traza.services.followups import fire

log = logging.getLogger(__name__)


@app.task(name=followups.FIRE_TASK, queue=OPS_QUEUE, pass_context=True)
async def fire_followup(context: JobContext, followup_id: int) -> None:
    """A follow-up's due time: re-check, then send (or record why not)."""
    log.info(await fire(followup_id))


@app.periodic(cron="*/15 * * * *", periodic_id="reactivations")
@app.task(name="plan_reactivations", queue=OPS_QUEUE, queueing_lock="reactivations")
async def reactivations(timestamp: int) -> None:
    """Invite inactive candidates back (agents with `reactivation` enabled)."""
    planned = await followups.plan_reactivations()
    if planned:
        log.info("planned %d reactivation(s)", planned)
