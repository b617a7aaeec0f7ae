"""Alerts and automatic containment: evaluation, containments, notification delivery."""
