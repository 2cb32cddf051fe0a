"""The LangServe app, for ``uvicorn langserve_app:app`` (settings from ERP_ variables / ERP_CONFIG)."""

from erp_chatbot.server.app import create_app

app = create_app()
