"""OSC control of a running pipeline: address map and a small UDP server.

Addresses (arguments as OSC types; ints and floats are interchangeable where they are integral):

=============================  ==========================  ===============================
address                        arguments                   parameter
=============================  ==========================  ===============================
``/after/steps``               i                           ``steps``
``/after/guidance_timbre``     f                           ``guidance_timbre``
``/after/guidance_structure``  f                           ``guidance_structure``
``/after/timbre``              f f ... (ZT values)         ``timbre_vector``
``/after/map``                 f f                         ``map_xy``
``/after/timbre_file``         s                           ``timbre_file``
``/after/reset``               (none)                      reset the pipeline's streaming state
=============================  ==========================  ===============================

Messages are only parsed here; the host applies them between two blocks, where a value the
pipeline refuses is logged in one line and ignored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from after.errors import BadInputError
from after.runtime.protocol import check_parameter

logger = logging.getLogger(__name__)

RESET = "reset"
"""Pseudo-parameter name of ``/after/reset``."""

OSC_ADDRESSES: dict[str, str] = {
    "/after/steps": "steps",
    "/after/guidance_timbre": "guidance_timbre",
    "/after/guidance_structure": "guidance_structure",
    "/after/timbre": "timbre_vector",
    "/after/map": "map_xy",
    "/after/timbre_file": "timbre_file",
    "/after/reset": RESET,
}
"""OSC address -> parameter name."""

_SINGLE_VALUE = {"steps", "guidance_timbre", "guidance_structure", "timbre_file"}


def parse_osc_message(address: str, args: tuple[Any, ...] | list[Any]) -> tuple[str, Any]:
    """Turn one OSC message into ``(parameter name, value)``; raises BadInputError if unusable.

    The value is checked with :func:`after.runtime.protocol.check_parameter` (the length of a
    timbre vector is left to the pipeline). ``/after/reset`` gives ``("reset", None)``.
    """
    if address not in OSC_ADDRESSES:
        raise BadInputError(f"OSC {address}: unknown address; expected one of {', '.join(OSC_ADDRESSES)}")
    name = OSC_ADDRESSES[address]
    args = tuple(args)
    if name == RESET:
        if args:
            raise BadInputError(f"OSC {address} {list(args)}: expected no arguments")
        return name, None
    if name in _SINGLE_VALUE:
        if len(args) != 1:
            raise BadInputError(f"OSC {address} {list(args)}: expected exactly one argument")
        value: Any = args[0]
        if name == "timbre_file" and not isinstance(value, str):
            raise BadInputError(f"OSC {address} {value!r}: expected a string (a file path)")
    else:
        value = args
    try:
        return name, check_parameter(name, value)
    except BadInputError as error:
        raise BadInputError(f"OSC {address}: {error}") from None


class OscControl:
    """An OSC UDP server on ``host:port``, in its own thread, that hands parsed messages to
    ``on_update`` one at a time, in arrival order (a knob sweep must end on its last value, so
    messages are not spread over one thread each).

    ``on_update(name, value)`` runs in the server's thread: keep it short (queue the update).
    Messages that do not parse are logged in one line (``on_error`` is called with the error too)
    and dropped. Port 0 picks a free port (see :attr:`port`).
    """

    def __init__(
        self,
        port: int,
        on_update: Callable[[str, Any], None],
        host: str = "127.0.0.1",
        on_error: Callable[[BadInputError], None] | None = None,
    ) -> None:
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_server import BlockingOSCUDPServer

        self._on_update = on_update
        self._on_error = on_error
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(self._handle)
        try:
            self._server = BlockingOSCUDPServer((host, int(port)), dispatcher)
        except OSError as error:
            raise BadInputError(f"OSC port {host}:{port}: cannot listen ({error})") from error
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="after-osc", daemon=True)

    def start(self) -> None:
        self._thread.start()
        logger.info("OSC: listening on %s:%d (/after/...)", self.host, self.port)

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=2.0)
        self._server.server_close()

    def _handle(self, address: str, *args: Any) -> None:
        try:
            name, value = parse_osc_message(address, args)
        except BadInputError as error:
            logger.warning("%s (ignored)", error)
            if self._on_error is not None:
                self._on_error(error)
            return
        self._on_update(name, value)
