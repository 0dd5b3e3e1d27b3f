"""Keep SQL parameters out of logs.

aiosqlite logs every statement *with its parameters* at DEBUG level. Our databases hold
ciphertext and, in a client's store, decrypted messages; an application that turns on
DEBUG logging for everything would write them to its log. Every module that opens an
aiosqlite database calls :func:`no_sql_parameters_in_logs` at import, which raises that
logger's threshold to INFO (only if it was lower), so nothing we store reaches a log.
"""

from __future__ import annotations

import logging


def no_sql_parameters_in_logs() -> None:
    logger = logging.getLogger("aiosqlite")
    if logger.level < logging.INFO:
        logger.setLevel(logging.INFO)
