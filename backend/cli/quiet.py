"""What a command-line run prints: its own progress and results, not the libraries' notices.

Only notices that the user of ``layerfusion`` cannot act on are silenced, each by its logger and text
or by its warning category and module; ``--verbose`` keeps them all.
"""
from __future__ import annotations

import logging
import sys
import warnings

# (logger, words in the message). transformers says once per class, at import, that it uses its PIL
# image processors because torchvision is not installed. The pipeline never uses an image processor
# (diffusers' SDXL pipeline only imports them), and torchvision is deliberately not a requirement.
NOTICES = (
    ("transformers.utils.import_utils", "requires torchvision (not installed)"),
)

# Deprecation notes about the libraries' own APIs: for whoever maintains this code, not its user.
LIBRARIES = r"(diffusers|transformers|huggingface_hub|accelerate|torch)(\..*)?$"

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class DropNotice(logging.Filter):
    """Drops a logger's records whose message contains ``words``."""

    def __init__(self, words: str) -> None:
        super().__init__()
        self.words = words

    def filter(self, record: logging.LogRecord) -> bool:
        return self.words not in record.getMessage()


def configure(verbose: bool, command: str | None) -> None:
    """Logging and warnings for one run. ``serve`` logs at INFO (a server's log is its output); the
    other commands only warnings and errors, so a run shows its progress bar and result lines. With
    ``verbose``: DEBUG, and every library notice."""
    if verbose:
        level = logging.DEBUG
    else:
        level = logging.INFO if command == "serve" else logging.WARNING
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    if verbose:
        return
    for name, words in NOTICES:
        logger = logging.getLogger(name)  # the library's own logger, made now or later: the same object
        if not any(isinstance(f, DropNotice) and f.words == words for f in logger.filters):
            logger.addFilter(DropNotice(words))
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=LIBRARIES)
