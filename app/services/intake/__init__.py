"""Callback intake: parse, decide, store every Sinch event."""
