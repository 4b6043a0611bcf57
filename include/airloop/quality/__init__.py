"""Great Expectations suites (``suites``), the validator (``validation``) and the data gate (``data_gate``)."""

from __future__ import annotations

import logging
from importlib.util import find_spec
from pathlib import Path

GREAT_EXPECTATIONS = "great_expectations"
# GE modules that log under their file path instead of their module name (``logging.getLogger(__file__)``).
_PATH_LOGGERS = (("data_context", "data_context_variables.py"),)


def quiet_great_expectations() -> None:
    """Keep Great Expectations' warnings and errors, drop its INFO chatter (hundreds of lines per import and run)."""
    logging.getLogger(GREAT_EXPECTATIONS).setLevel(logging.WARNING)
    spec = find_spec(GREAT_EXPECTATIONS)  # locates the package without importing it
    if spec is not None and spec.origin:
        for parts in _PATH_LOGGERS:
            logging.getLogger(str(Path(spec.origin).parent.joinpath(*parts))).setLevel(logging.WARNING)


# GE logs most of its chatter while it is imported (docs decorators, metric registry), before any function of ours
# runs; every module of this package imports GE, so this is the one place early enough to set the level.
quiet_great_expectations()
