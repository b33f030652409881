"""Lightning's messages in a training log: once each, in the application's format, without tips."""

import io
import logging

import lightning.pytorch  # noqa: F401  (installs Lightning's own console handlers)
import pytest
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from after.train.run import route_lightning_logs

_NAMES = ("", "lightning", "lightning.pytorch", "lightning.fabric")


@pytest.fixture
def logging_state():
    """Restore handlers and propagation of the loggers the test touches."""
    loggers = {name: logging.getLogger(name) for name in _NAMES}
    saved = {name: (list(logger.handlers), logger.propagate) for name, logger in loggers.items()}
    yield
    for name, (handlers, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.propagate = propagate


def test_lightning_messages_come_out_once_in_the_application_format_without_tips(logging_state):
    application = io.StringIO()
    root_handler = logging.StreamHandler(application)
    root_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(root_handler)
    # Lightning's own consoles, as it installs them (one always, one when imported before logging is set up).
    own_consoles = {name: io.StringIO() for name in ("lightning", "lightning.pytorch")}
    for name, stream in own_consoles.items():
        logging.getLogger(name).addHandler(logging.StreamHandler(stream))
    logging.getLogger("lightning.pytorch").propagate = False

    route_lightning_logs()
    route_lightning_logs()  # idempotent: still once
    rank_zero_info("GPU available: False, used: False")
    rank_zero_info("💡 Tip: For seamless cloud logging, try installing something")

    text = application.getvalue()
    assert text.count("GPU available: False") == 1
    assert "INFO lightning.pytorch.utilities.rank_zero: GPU available" in text
    assert "Tip" not in text
    assert all(stream.getvalue() == "" for stream in own_consoles.values())


def test_without_application_logging_lightning_keeps_its_console(logging_state):
    root = logging.getLogger()
    root.handlers[:] = []
    console = io.StringIO()
    logging.getLogger("lightning").addHandler(logging.StreamHandler(console))

    route_lightning_logs()
    rank_zero_info("GPU available: False, used: False")
    rank_zero_info("💡 Tip: try installing something")

    assert console.getvalue().count("GPU available") == 1
    assert "Tip" not in console.getvalue()
