"""The baseline of bench/auth_me.py: a FastAPI app with one route that does nothing.

Served by uvicorn with the same options as ``bazaar serve`` (one worker, no access log, no
uvicorn log config, no proxy headers), so the difference to GET /api/auth/me is our own code:
middleware, the auth dependency, the session cache, serialisation.

    .venv/bin/python -m bench.noop_app --port 8100
"""

import argparse

import uvicorn
from fastapi import FastAPI

app = FastAPI(title="noop")


@app.get("/noop")
async def noop() -> dict[str, bool]:
    return {"ok": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        workers=1,
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
