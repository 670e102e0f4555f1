"""Liveness: public, and says whether the control-plane database answers."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy import text

from afs.api.deps import DatabaseDep
from afs.api.schemas import Health

router = APIRouter(tags=["public"])


@router.get("/health", response_model=Health)
def health(db: DatabaseDep, response: Response) -> dict[str, str]:
    try:
        with db.sessions() as session:
            session.execute(text("SELECT 1"))
    except Exception as error:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "degraded", "database": f"unreachable: {type(error).__name__}"}
    return {"status": "ok", "database": db.dialect}
