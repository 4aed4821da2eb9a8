"""Logging for workflow steps: one log file per job, and errors that name the input."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def job_logger(path: str | Path, name: str) -> logging.Logger:
    """A logger that writes to the job's log file, shows warnings on stderr, and records a failure's
    traceback in the log file before the job exits."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(path, mode="w")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    to_stderr = logging.StreamHandler()
    to_stderr.setLevel(logging.WARNING)
    to_stderr.setFormatter(logging.Formatter(f"{name}: %(levelname)s %(message)s"))
    logger.addHandler(to_file)
    logger.addHandler(to_stderr)
    previous_hook = sys.excepthook

    def log_failure(kind, error, trace):
        to_file.handle(logger.makeRecord(name, logging.ERROR, __file__, 0, f"{kind.__name__}: {error}",
                                         None, (kind, error, trace)))
        previous_hook(kind, error, trace)

    sys.excepthook = log_failure
    return logger
