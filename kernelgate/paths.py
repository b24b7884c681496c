"""Where the project's shipped folders (kernelspecs/, images/) are found."""

from __future__ import annotations

import sys
from pathlib import Path

import kernelgate


def shipped_folder(name: str) -> Path:
    """A top-level folder of the project: the checkout's when running from one, else the
    copy installed under sys.prefix/share/kernelgate (see setup.py's data_files)."""
    checkout = Path(kernelgate.__file__).resolve().parent.parent / name
    return checkout if checkout.is_dir() else Path(sys.prefix) / "share" / "kernelgate" / name
