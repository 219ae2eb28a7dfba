"""Terminal verbosity, one switch for the whole process and the processes it starts.

Quiet (default): progress bars and one result line per item; Trainer's per-log dicts go to the run
directory's log file only. Verbose (`mentalese -v ...`): they are printed as well. The switch is an
environment variable so that child processes (torchrun workers, `bench demo`) inherit it.
"""

from __future__ import annotations

import os

VERBOSE_ENV = "MENTALESE_VERBOSE"


def set_verbose(on: bool) -> None:
    os.environ[VERBOSE_ENV] = "1" if on else "0"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "0") == "1"
