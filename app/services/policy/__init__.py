"""The policy: its live cache, rules and lists administration, import/export, dry runs."""
