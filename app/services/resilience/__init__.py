"""Resilience: answering on time and losing nothing while the database is away."""

from app.services.resilience.outage import Outage

__all__ = ["Outage"]
