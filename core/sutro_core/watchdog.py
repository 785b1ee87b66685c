"""A timer that shuts a socket down at a deadline.

httpx's read timeouts are per read, not per request: a stalled or trickling body
would hold a blocking read long past the caller's deadline. Shutting the socket down makes that read
return at once; ``fired`` then tells the caller the deadline, not the peer, ended it.

Example:
    >>> dog = SocketWatchdog(sock, deadline=time.time() + 5)   # doctest: +SKIP
    >>> try: body = read_all(sock)                               # doctest: +SKIP
    ... finally: dog.stop()
"""

from __future__ import annotations

import socket
import threading
import time


class SocketWatchdog:
    """Shuts ``sock`` down at ``deadline`` (epoch seconds); does nothing without either."""

    def __init__(self, sock: socket.socket | None, deadline: float | None) -> None:
        self.fired = False
        self._timer: threading.Timer | None = None
        if deadline is not None and sock is not None:
            self._timer = threading.Timer(max(0.0, deadline - time.time()), self._fire, (sock,))
            self._timer.daemon = True
            self._timer.start()

    def _fire(self, sock: socket.socket) -> None:
        self.fired = True
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def stop(self) -> None:
        """Cancel the timer (the read finished in time)."""
        if self._timer is not None:
            self._timer.cancel()
