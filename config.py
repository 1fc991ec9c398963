"""Settings: read once at start, checked all together, refused with one message."""

import base64
import binascii
import re
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_BASE_URL = "https://api.telnyx.com/v2"
DEFAULT_DATABASE_URL = "sqlite:///receipts.db"

PORTAL_KEYS = "Telnyx portal, Account Settings > Keys & Credentials"
E164 = re.compile(r"\+[1-9][0-9]{1,14}")


class ConfigError(Exception):
    """The settings cannot run the service; the message names every problem."""

    def __init__(self, problems):
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"The service cannot start:\n{lines}")


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment, already checked."""

    api_key: str
    public_keys: tuple
    phone_number: str
    base_url: str
    database_url: str
    database_path: str | None
    database_pool_size: int
    sqlite_synchronous: str
    host: str
    port: int
    debug: bool
    webhook_tolerance: int
    telnyx_timeout: float
    messaging_profile_id: str | None
    webhook_url: str | None
    api_token: str | None


def load_settings(source):
    """Build Settings from a mapping of names to strings, or raise ConfigError."""
    problems = []
    reader = _Reader(source, problems)

    settings = Settings(
        api_key=reader.required(
            "TELNYX_API_KEY", f"the API key from the {PORTAL_KEYS}, API Keys"
        ),
        public_keys=reader.public_keys(),
        phone_number=reader.phone_number(),
        base_url=reader.url("TELNYX_BASE_URL", DEFAULT_BASE_URL).rstrip("/"),
        database_url=reader.database_url(),
        database_path=None,
        database_pool_size=reader.integer("DATABASE_POOL_SIZE", 4, low=1, high=100),
        sqlite_synchronous=reader.choice("SQLITE_SYNCHRONOUS", ("NORMAL", "FULL")),
        host=reader.text("HOST", "127.0.0.1"),
        port=reader.integer("PORT", 5000, low=1, high=65535),
        debug=reader.flag("FLASK_DEBUG"),
        webhook_tolerance=reader.integer(
            "WEBHOOK_TOLERANCE_SECONDS", 300, low=1, high=86400
        ),
        telnyx_timeout=reader.integer("TELNYX_TIMEOUT_SECONDS", 10, low=1, high=120),
        messaging_profile_id=reader.text("TELNYX_MESSAGING_PROFILE_ID", None),
        webhook_url=reader.url("TELNYX_WEBHOOK_URL", None),
        api_token=reader.api_token(),
    )

    if problems:
        raise ConfigError(problems)
    if settings.database_url.startswith("sqlite:"):
        path = settings.database_url[len("sqlite:///") :]
        settings = replace(settings, database_path=str(Path(path)))
    return settings


def decode_public_key(text):
    """Return the 32 raw bytes of a base64 Ed25519 public key, or raise ValueError."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError("is not valid base64") from error
    if len(raw) != 32:
        raise ValueError(f"decodes to {len(raw)} bytes, not the 32 of an Ed25519 key")
    return raw


class _Reader:
    """Reads one setting at a time, collecting problems instead of stopping."""

    def __init__(self, source, problems):
        self.source = source
        self.problems = problems

    def text(self, name, default):
        value = self.source.get(name)
        if value is None or str(value).strip() == "":
            return default
        return str(value).strip()

    def required(self, name, where):
        value = self.text(name, None)
        if value is None:
            self.problems.append(f"{name} is missing: set it to {where}.")
            return ""
        return value

    def integer(self, name, default, low, high):
        value = self.text(name, None)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            self.problems.append(
                f"{name} must be a whole number from {low} to {high}, not {value!r}."
            )
            return default
        return number

    def flag(self, name):
        value = (self.text(name, "0") or "0").lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value not in ("0", "false", "no", "off"):
            self.problems.append(f"{name} must be 1 or 0, not {value!r}.")
        return False

    def choice(self, name, choices):
        value = (self.text(name, choices[0]) or choices[0]).upper()
        if value not in choices:
            self.problems.append(f"{name} must be one of {', '.join(choices)}.")
            return choices[0]
        return value

    def url(self, name, default):
        value = self.text(name, None)
        if value is None:
            return default
        if not re.match(r"^https?://[^\s/]+", value):
            # The value is not repeated: a key pasted in the wrong place
            # must not end up in a terminal or a log.
            self.problems.append(f"{name} must be an http:// or https:// URL.")
            return default or ""
        return value

    def api_token(self):
        value = self.text("API_TOKEN", None)
        if value is not None and not re.fullmatch(r"[A-Za-z0-9._~+/=-]{16,512}", value):
            self.problems.append(
                "API_TOKEN must be 16 to 512 letters, digits or ._~+/=- characters; "
                "make one with: python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'"
            )
        return value

    def phone_number(self):
        value = self.required(
            "TELNYX_PHONE_NUMBER",
            "a number you own in E.164 form, such as +12025550100 "
            "(Telnyx portal, Numbers > My Numbers)",
        )
        if value and not E164.fullmatch(value):
            self.problems.append(
                "TELNYX_PHONE_NUMBER must be in E.164 form, such as +12025550100."
            )
        return value

    def public_keys(self):
        where = f"the public key from the {PORTAL_KEYS}, Public Key"
        value = self.required("TELNYX_PUBLIC_KEY", where)
        if not value:
            return ()
        if value.startswith("KEY"):
            self.problems.append(
                "TELNYX_PUBLIC_KEY holds what looks like an API key (it starts with "
                f"'KEY'). Webhooks are verified with {where}, which is different."
            )
            return ()
        keys = []
        for part in value.split(","):
            try:
                keys.append(decode_public_key(part))
            except ValueError as error:
                self.problems.append(f"TELNYX_PUBLIC_KEY {error}: use {where}.")
        return tuple(keys)

    def database_url(self):
        value = self.text("DATABASE_URL", DEFAULT_DATABASE_URL)
        if value.startswith("sqlite:"):
            path = value[len("sqlite:///") :]
            if not value.startswith("sqlite:///") or not path:
                self.problems.append(
                    "DATABASE_URL must look like sqlite:///receipts.db (a relative "
                    "path) or sqlite:////var/lib/receipts.db (an absolute one)."
                )
            elif path == ":memory:":
                self.problems.append(
                    "DATABASE_URL cannot be an in-memory database: receipts must "
                    "outlive the process and be shared by its workers."
                )
            return value
        if value.startswith(("postgresql:", "postgres:")):
            if not _is_postgres_url(value):
                self.problems.append(
                    "DATABASE_URL must look like "
                    "postgresql://user:password@host:5432/database."
                )
            return value
        # The value is not repeated: it may hold a password.
        self.problems.append(
            "DATABASE_URL must start with sqlite:/// (the default, one machine) or "
            "postgresql:// (several instances sharing one database)."
        )
        return DEFAULT_DATABASE_URL


def _is_postgres_url(value):
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("postgresql", "postgres") and len(parts.path) > 1
