"""The pure rules engine: policy models, facts, aggregate specs and `evaluate`.

Imports only the standard library, pydantic and phonenumbers (an import-linter contract).
"""
