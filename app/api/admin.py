"""/admin endpoints: rules, lists, policy import/export and evaluate, containments and alert
history, backtests, behind bearer tokens."""

from __future__ import annotations

from fastapi import APIRouter

from app.api import admin_alerts, admin_backtest, admin_lists, admin_policy, admin_rules
from app.api.problems import problem_responses

router = APIRouter(prefix="/admin", tags=["admin"], responses=problem_responses(401))
router.include_router(admin_rules.router)
router.include_router(admin_lists.router)
router.include_router(admin_policy.router)
router.include_router(admin_alerts.router)
router.include_router(admin_backtest.router)
