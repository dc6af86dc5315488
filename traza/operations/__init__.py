"""Human operations: agents and keys, assignment, handoff lifecycle, SLAs, CSAT."""
