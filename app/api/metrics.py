"""GET /metrics: Prometheus text format, from the app's own registry."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def prometheus_metrics(runtime: RuntimeDep) -> Response:
    """Counters, gauges and histograms for Prometheus to scrape."""
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)
