"""`make bench`: VerifyGuard against a bare FastAPI + asyncpg baseline, same load, same box."""
