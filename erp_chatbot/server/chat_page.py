"""The chat view at ``/chat/``: a conversation page over ``<server.path>/stream`` that renders
answers as Markdown, with the sources and the grounding note apart from the answer.

LangServe's chat playground (``<path>/chat/playground/``) shows messages as plain text; this page is
a static file and a script (``static/``), with no third-party code and nothing fetched from
elsewhere. The page and its script hold no data, so they load without a key (a browser cannot
send one when it opens a page); the questions they send carry the key typed into the page.
"""

from __future__ import annotations

import html
from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

PAGE = "/chat/"
SCRIPT = "/chat/chat.js"
OPEN_PAGES = (PAGE, SCRIPT)  # exact paths that load without a key (``guards.Authenticate``)


@cache
def _static(name: str) -> str:
    return (files("erp_chatbot.server") / "static" / name).read_text(encoding="utf-8")


def chat_page_router(chain_path: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    meta = f'<meta name="erp-path" content="{html.escape(chain_path)}">'

    @router.get(PAGE)
    def page() -> HTMLResponse:
        return HTMLResponse(_static("chat.html").replace("<title>", f"{meta}\n<title>", 1))

    @router.get(SCRIPT)
    def script() -> Response:
        return Response(_static("chat.js"), media_type="text/javascript; charset=utf-8")

    return router
