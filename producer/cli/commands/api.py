"""`tenderscan api`: serve the HTTP API under uvicorn (settings from TENDERSCAN_* variables)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("api", help="serve the HTTP API (docs at /docs)",
                              description="Serve POST /v1/scans and GET /v1/scans/{id} under uvicorn. "
                              "Each worker process reads the TENDERSCAN_* environment once.")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 in a container)")
    p.add_argument("--port", type=int, default=8000,
                   help="TCP port (default 8000, the port clients assume when TENDERSCAN_API_URL is unset)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from workers.core.errors import SettingsError
    from workers.core.logging import configure_logging
    from workers.core.settings import DEV_KEY_HMAC_SECRET, Settings

    settings = Settings.from_env()  # fail here, naming the variable, rather than inside each worker process
    if settings.key_hmac_secret == DEV_KEY_HMAC_SECRET and args.host not in ("127.0.0.1", "localhost", "::1"):
        raise SettingsError("TENDERSCAN_KEY_HMAC_SECRET is the built-in development value; set your own "
                            "(e.g. `openssl rand -hex 32`) before serving on a non-loopback address")
    # log_config=None: uvicorn's records (and its tracebacks) go through our root handler as JSON, not
    # through its own text formatter; each worker process reconfigures in create_app_from_env
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run("producer.app:create_app_from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, access_log=False, log_level="warning", timeout_graceful_shutdown=35,
                log_config=None)
    return 0
