"""The relay's log lines: text for a person at a terminal, or ``LR_LOG_FORMAT=json`` for a
log shipper (one object a line). Either way a token or a phone number that reached a
message is masked before it is written: logs leave the machine, tokens admit their holder
and phone numbers are personal data."""

from __future__ import annotations

import datetime
import json
import logging
import re

from server.config import Config
from server.roster import mask_phone

FORMATS = ("text", "json")
# a signed token (server/auth.py: base64url JSON . base64url HMAC), and a mainland mobile number
TOKEN = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}")
PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


def scrub(text: str) -> str:
    """``text`` with tokens and phone numbers masked (phones as the exports mask them)."""
    return PHONE.sub(lambda m: mask_phone(m.group()), TOKEN.sub("[token]", text))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC), level, process, logger, message, exception."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "process": self.process,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        if record.exc_info:
            line["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


def setup_logging(config: Config, process: str) -> None:
    """Log to standard error at ``LR_LOG_LEVEL`` in ``LR_LOG_FORMAT``; ``process``: which of
    the relay's processes this is (``serve``, ``worker1``, ``writer``)."""
    handler = logging.StreamHandler()
    if config.log_format == "json":
        handler.setFormatter(JsonFormatter(process))
    else:
        handler.setFormatter(
            TextFormatter(f"%(asctime)s %(levelname)s {process} %(name)s: %(message)s")
        )
    logging.basicConfig(level=config.log_level, handlers=[handler], force=True)
