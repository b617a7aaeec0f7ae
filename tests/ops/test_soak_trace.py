"""`bench.soak --pg-setting` and `--trace`: a setting tried on the private cluster overrides
or adds to the production ones (which stay as they are), and autovacuum's reports are read
back from a cluster's log as one line each, continuation lines included. No server."""

from __future__ import annotations

import argparse

from bench import postgres_settings, soak, soak_trace

LOG = """\
2026-12-05 14:30:01.123 UTC [101] LOG:  automatic vacuum of table "db.public.callbacks": index scans: 0
\tpages: 0 removed, 9324 remain, 1864 scanned (19.99% of total)
\tWAL usage: 1856 records, 0 full page images, 110141 bytes
\tsystem usage: CPU: user: 0.00 s, system: 0.00 s, elapsed: 0.09 s
2026-12-05 14:30:01.200 UTC [99] LOG:  checkpoint starting: time
2026-12-05 14:30:02.456 UTC [101] LOG:  automatic analyze of table "db.public.callbacks"
\tsystem usage: CPU: user: 0.17 s, system: 0.01 s, elapsed: 0.71 s
"""


def test_a_tried_setting_overrides_or_adds_to_the_production_ones() -> None:
    args = argparse.Namespace(pg_setting=["autovacuum=off", "log_autovacuum_min_duration=0"])
    found = soak._cluster_settings(args)
    assert found["autovacuum"] == "off"
    assert found["log_autovacuum_min_duration"] == "0"
    assert {
        k: v for k, v in found.items() if k not in ("autovacuum", "log_autovacuum_min_duration")
    } == {k: v for k, v in postgres_settings.SETTINGS.items() if k != "autovacuum"}
    assert postgres_settings.SETTINGS["autovacuum"] == "on"


def test_autovacuum_reports_are_read_whole_from_the_log() -> None:
    reports = soak_trace._reports(LOG)
    assert len(reports) == 2
    assert "WAL usage: 1856 records" in reports[0] and "elapsed: 0.09 s" in reports[0]
    assert "checkpoint" not in reports[0]
    assert reports[1].startswith("2026-12-05 14:30:02.456") and "elapsed: 0.71 s" in reports[1]
