"""Reading what was stored: look-ups, search, timelines, export, statistics, retention."""
