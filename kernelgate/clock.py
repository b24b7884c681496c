"""Timestamps as the Jupyter APIs carry them."""

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """The format GatewayClient parses: always microseconds and a Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
