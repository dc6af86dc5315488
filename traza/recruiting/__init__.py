"""Recruiting: the candidate pool, ATS events and the follow-up agent."""
