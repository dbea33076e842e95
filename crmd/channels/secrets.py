"""Channel secrets: from environment variables or systemd credentials, never from YAML.

systemd's `LoadCredential=` puts each credential in a file under $CREDENTIALS_DIRECTORY; an
environment variable of the same secret wins, so a developer can export one in a shell.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from crmd.channels.base import SecretSpec


def read_secret(spec: SecretSpec, env: Mapping[str, str]) -> str | None:
    """The secret's value, or None when neither the variable nor the credential is there."""
    value = env.get(spec.env, "")
    if value:
        return value
    directory = env.get("CREDENTIALS_DIRECTORY", "")
    if directory:
        path = Path(directory) / spec.credential
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError:
            return None
        return value or None
    return None


def missing_text(spec: SecretSpec) -> str:
    """What to tell a person about a missing secret."""
    return (
        f"{spec.what} is missing: set the environment variable {spec.env}, or give the "
        f"service the systemd credential {spec.credential} (LoadCredential=)"
    )


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by `***`, for logs and error messages."""
    for value in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(value, "***")
    return text
