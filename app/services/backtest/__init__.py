"""Backtests: a candidate policy replayed over stored history, off the request path."""
