"""Errors the user sees as one line (the CLI prints them without a traceback).

Each kind carries the process exit status `hvemu` ends with, taken from BSD's
<sysexits.h> so that hvemu's own failures never look like a guest's exit code 1 or 2
(the table is in cli.py's docstring and the README's "Exit status" paragraph).
"""

# <sysexits.h>
EX_USAGE = 64        # the command line was wrong: an unknown option, a bad value
EX_DATAERR = 65      # an input file is malformed: a bad ELF, an image that cannot fit
EX_NOINPUT = 66      # an input file is missing, unreadable or not a regular file
EX_UNAVAILABLE = 69  # a host tool hvemu needs is not installed (valgrind, for the perf gate)
EX_SOFTWARE = 70     # a bug in hvemu ("internal error")
EX_OSERR = 71        # the host refused a resource (guest RAM)
EX_CANTCREAT = 73    # an output file cannot be created
EX_IOERR = 74        # I/O on the host failed (the console's stdout was closed, ...)
EX_TEMPFAIL = 75     # a live move failed and the guest ran on where it was (fleet migrate)


class HvemuError(Exception):
    """A problem with the user's input or configuration: printed as `hvemu: <message>`."""

    exit_code = EX_DATAERR


class UsageError(HvemuError):
    """A bad command-line value (a size, a count, a disk spec, conflicting options)."""

    exit_code = EX_USAGE


class ImageError(HvemuError):
    """A guest image that is malformed, for another machine, or too large."""

    exit_code = EX_DATAERR


class NoInputError(HvemuError):
    """An input file (image, disk) that is missing, unreadable or not a regular file."""

    exit_code = EX_NOINPUT


class MissingImageError(ImageError, NoInputError):
    """An image that does not exist or cannot be read (an ImageError for callers)."""

    exit_code = EX_NOINPUT


class HostError(HvemuError):
    """The host cannot give what was asked for (guest RAM)."""

    exit_code = EX_OSERR


class CantCreateError(HvemuError):
    """An output file (a new disk image, --stats-json) cannot be created or written."""

    exit_code = EX_CANTCREAT


class HostIOError(HvemuError):
    """Host I/O failed while the guest ran (its console output cannot be written)."""

    exit_code = EX_IOERR


class ToolMissingError(HvemuError):
    """A host tool hvemu needs for what was asked is not installed."""

    exit_code = EX_UNAVAILABLE


class InternalError(HvemuError):
    """Something in hvemu itself failed."""

    exit_code = EX_SOFTWARE
