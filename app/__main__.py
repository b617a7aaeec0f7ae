"""`python -m app` runs the `verifyguard` command."""

from app.cli import main

main()
