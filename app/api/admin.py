"""/admin endpoints: rules, lists, policy import/export, evaluate and backtests, behind bearer
tokens."""

from __future__ import annotations

from fastapi import APIRouter

from app.api import admin_backtest, admin_lists, admin_policy, admin_rules

router = APIRouter(prefix="/admin", tags=["admin"])
router.include_router(admin_rules.router)
router.include_router(admin_lists.router)
router.include_router(admin_policy.router)
router.include_router(admin_backtest.router)
