"""`python -m sutro_local` is the `sutro-local` command.

With ``SUTRO_LOCAL_PARENT_PID`` set (``LocalServer`` sets it), the server asks the kernel to SIGTERM it when
that parent dies (Linux), so a killed test run or demo leaves no server behind.
"""

import os
import signal
import sys

from .cli import main


def _die_with_parent(parent: str | None) -> None:
    if not parent:
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's stop() still applies
        return
    if os.getppid() != int(parent):
        sys.exit(0)  # the parent died before the request took effect


_die_with_parent(os.environ.pop("SUTRO_LOCAL_PARENT_PID", None))
sys.exit(main())
