"""``SlowLink``: a TCP forwarder that holds every answer back, for tests that need slow uploads.

With each response delayed, uploads last long enough to see them overlap (simultaneous
connections, ``peak``) and to kill a server while S3 has stored an upload whose answer has
not reached the server yet: the case where a restarted archiver must not upload it twice.
The request direction is not delayed, so S3 has the upload as soon as it is sent.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from bookstore.testing import StopOnExit

__all__ = ["SlowLink"]


class SlowLink(StopOnExit):
    """Forwards 127.0.0.1:<port> to ``host:port``, delaying each chunk sent back by ``delay`` s."""

    def __init__(self, host: str, port: int, delay: float) -> None:
        self.target = (host, port)
        self.delay = delay
        self.peak = 0
        self.total = 0
        self._active = 0
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._spawn(self._accept)

    def _spawn(self, target: object, *args: object) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads.append(thread)
        thread.start()
        return thread

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._socks += [client, upstream]
            self._active += 1
            self.total += 1
            self.peak = max(self.peak, self._active)
        back = self._spawn(self._pump, upstream, client, self.delay)
        self._pump(client, upstream, 0.0)
        back.join()
        with self._lock:
            self._active -= 1
        client.close()
        upstream.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, delay: float) -> None:
        try:
            while data := src.recv(65536):
                if delay:
                    time.sleep(delay)
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop accepting, drop every connection and wait for the threads."""
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
            threads = list(self._threads)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)

    stop = close
