"""The error every command turns into a one-line message and exit code 2 (no traceback)."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input: the message names the file, line or value, and what to do."""
