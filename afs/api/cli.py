"""`afs api`: serve the API with uvicorn (127.0.0.1 unless told otherwise)."""

from __future__ import annotations

import click


@click.command("api")
@click.option("--host", default=None, help="Default: AFS_API_HOST (127.0.0.1).")
@click.option("--port", type=int, default=None, help="Default: AFS_API_PORT (8000).")
def api(host: str | None, port: int | None) -> None:
    """Serve the scientists' API (OpenAPI docs at /docs, the web page at /ui/) over AFS_DATABASE_URL."""
    import uvicorn

    from afs.api.app import create_app
    from afs.config import Settings

    settings = Settings()
    # log_config=None: uvicorn's loggers go through the logging `afs` set up (text or AFS_LOG_FORMAT=json).
    uvicorn.run(create_app(settings), host=host or settings.api_host, port=port or settings.api_port,
                log_level="info", log_config=None)
