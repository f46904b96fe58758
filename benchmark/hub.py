"""The Hugging Face ``datasets`` library, imported the one way every task loads data with it."""

from __future__ import annotations

from benchmark.config import HELD


def datasets():
    """``datasets``, imported on first use (it takes about a second) without progress bars; its log lines and the
    hub client's (e.g. a retry per attempt when offline) are held like warnings while the command checks its input,
    so a failed load is one error line."""
    import datasets as module

    module.disable_progress_bars()
    HELD.hold_loggers()
    return module
