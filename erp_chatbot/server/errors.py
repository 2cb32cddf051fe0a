"""Error responses in the documented shape (FastAPI's 422: a list of problems)."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError


async def documented_422(request: Request, error: HTTPException) -> Response:
    """LangServe answers some 422s with a string; the schema (FastAPI's) documents a list."""
    if error.status_code == 422 and isinstance(error.detail, str):
        detail = [{"loc": ["body"], "msg": error.detail, "type": "value_error"}]
        return JSONResponse(status_code=422, content={"detail": detail})
    return await http_exception_handler(request, error)


async def invalid_input(_: Request, error: ValidationError) -> JSONResponse:
    """LangServe's batch endpoint validates inputs outside its own 422 translation."""
    return JSONResponse(status_code=422, content={"detail": error.errors(include_url=False, include_context=False)})


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, documented_422)
    app.add_exception_handler(ValidationError, invalid_input)
