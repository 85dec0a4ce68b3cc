"""The error every command turns into a one-line message and exit code 2 (no traceback)."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input: the message names the file, line or value, and what to do."""

    def __init__(self, *args):
        # torch's DataLoader re-raises a worker's error as ``type(exc)(text)``, the text holding the worker's
        # traceback; keep only the original message, which already says what to do.
        if len(args) == 1 and isinstance(args[0], str) and "\nOriginal Traceback" in args[0]:
            last = args[0].rstrip().splitlines()[-1]
            args = (last.split(": ", 1)[1] if ": " in last else last,)
        super().__init__(*args)
