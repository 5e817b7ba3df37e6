"""``tether-evaluator`` / ``python -m tether_eval``: serve until SIGTERM or SIGINT.

Settings come from ``TETHER_EVAL_*`` variables (:class:`service.Settings`); the redactor is the
sidecar's (:func:`redaction.load`). Prints ``listening on http://HOST:PORT`` once bound.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web
from pydantic import ValidationError

from .config import ConfigError
from .redaction import Redactor, load
from .service import Service, Settings

__all__ = ["main", "serve"]


async def serve(settings: Settings, redactor: Redactor) -> None:
    service = await Service.open(settings, redactor)
    runner = web.AppRunner(service.app(), shutdown_timeout=5.0)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
        host, port = runner.addresses[0][:2]
        judging = service.start()
        print(f"listening on http://{host}:{port}", flush=True)
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({stopping, judging}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if judging.done():  # it never ends by itself: exit, so that the pod is restarted
            raise SystemExit(f"tether-evaluator: the judging loop ended: {judging.exception()!r}")
    finally:
        await runner.cleanup()
        await service.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = Settings()  # from the environment (TETHER_EVAL_*)
        asyncio.run(serve(settings, load()))
    except (ValidationError, ConfigError) as exc:
        raise SystemExit(f"tether-evaluator: {exc}") from None


if __name__ == "__main__":
    main()
