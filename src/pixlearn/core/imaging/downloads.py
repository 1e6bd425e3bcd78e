"""Downloading an image over http(s), bounded in time and size, with one ImageError for every failure.

One deadline covers the whole request: connecting, the status line and headers, and the body, over
every redirect. Each read from the socket waits at most for the time left, so a server that sends
one byte a second, in its headers or in its body, is given up on when the deadline passes rather
than when it stops sending. At most `max_bytes` are read, and at most MAX_REDIRECTS redirects are
followed, all to http or https. A malformed response (a bad status line, an HTTP/0.9 reply, too
many or too long header lines, a body cut short) is an ImageError naming the URL and the reason.
The deadline covers resolving the host name too (the system resolver runs in a thread that is given
up on, since it cannot be interrupted) and, through a proxy, the CONNECT exchange with it.

    >>> fetch_url("file:///etc/passwd")
    Traceback (most recent call last):
    ...
    pixlearn.core.errors.ImageError: file:///etc/passwd: only http and https URLs are allowed, not 'file'
"""

from __future__ import annotations

import http.client
import io
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from pixlearn.core.errors import ImageError

URL_TIMEOUT_S = 20.0  # the whole request, headers and redirects included
URL_MAX_BYTES = 50 * 1024 * 1024
MAX_REDIRECTS = 5
_CHUNK = 1 << 16


class _DeadlinePassed(TimeoutError):
    """Raised by a read (or a connect) that would start after the deadline."""


class _Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left; _DeadlinePassed once there are none."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise _DeadlinePassed(f"timed out after {self.seconds:g} s")
        return left


class _DeadlineReader(io.RawIOBase):
    """A socket's reads, each waiting at most for the time left before the deadline."""

    def __init__(self, sock: socket.socket, deadline: _Deadline):
        super().__init__()
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)  # holds a reference: the socket stays open for it
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(self._deadline.left())
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineSocket:
    """A connected socket whose sends and makefile() reads are bounded by the deadline: http.client
    reads the status line, the headers and the body through makefile(). The rest is the socket's."""

    def __init__(self, sock: socket.socket, deadline: _Deadline):
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))

    def sendall(self, data: Any, *args: Any) -> None:
        self._sock.settimeout(self._deadline.left())
        self._sock.sendall(data, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _resolve(host: str, port: int, deadline: _Deadline) -> list[tuple]:
    """getaddrinfo's addresses for (host, port), given up on when the deadline passes: the resolver
    cannot be interrupted, so it runs in a daemon thread that is left to finish on its own."""
    found: list = []

    def lookup() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except Exception as exc:  # noqa: BLE001 - handed to the caller, which raises it (a bad IDNA name too)
            found.append(exc)

    thread = threading.Thread(target=lookup, name="pixlearn-resolve", daemon=True)
    thread.start()
    thread.join(deadline.left())
    if not found:
        raise _DeadlinePassed(f"timed out after {deadline.seconds:g} s (resolving {host})")
    if isinstance(found[0], Exception):
        raise found[0]
    return found[0]


def _connect(address: tuple[str, int], deadline: _Deadline, source_address: Any = None) -> socket.socket:
    """A socket connected to the first of the host's addresses that answers within the time left."""
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in _resolve(*address, deadline):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(deadline.left())
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError(f"no address found for {address[0]}")


class _DeadlineConnection:
    """Mixed into http.client's connections: resolve and connect within the time left (through a proxy,
    the CONNECT exchange too), then talk through _DeadlineSocket."""

    def __init__(self, *args: Any, deadline: _Deadline, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self._create_connection = lambda address, timeout=None, source=None: _connect(address, deadline, source)

    def connect(self) -> None:
        self.timeout = self.deadline.left()  # a TLS handshake within the time left
        super().connect()  # type: ignore[misc]
        self.sock = _DeadlineSocket(self.sock, self.deadline)

    def _tunnel(self) -> None:
        # http.client reads the proxy's answer to CONNECT through self.sock.makefile(): bounded like the rest
        raw = self.sock
        self.sock = _DeadlineSocket(raw, self.deadline)
        try:
            super()._tunnel()  # type: ignore[misc]
        finally:
            self.sock = raw


class _HTTPConnection(_DeadlineConnection, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineConnection, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self.deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPConnection, req, deadline=self.deadline)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline):
        super().__init__()
        self.deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPSConnection, req, context=self._context, deadline=self.deadline)


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow at most MAX_REDIRECTS redirects, and only to http(s): urllib's own handler also
    follows redirects to ftp://, which would let a web server make us read another scheme."""

    max_redirections = MAX_REDIRECTS

    def http_error_302(self, req, fp, code, msg, headers):  # noqa: ANN001, ANN201 - urllib's signature
        target = urllib.parse.urljoin(req.full_url, headers.get("location") or headers.get("uri") or "")
        scheme = urllib.parse.urlparse(target).scheme.lower()
        if scheme not in ("http", "https"):
            raise ImageError(req.full_url, f"redirected to a {scheme!r} URL; only http and https are allowed")
        # urllib reads a redirect's body to its end before following it, however long; closed first,
        # the body is never read.
        fp.close()
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def fetch_url(url: str, timeout: float | None = None, max_bytes: int | None = None) -> bytes:
    """Download an image over http(s) within `timeout` seconds in all (headers, body and redirects;
    default URL_TIMEOUT_S), at most `max_bytes` bytes (default URL_MAX_BYTES) and MAX_REDIRECTS
    redirects, all to http(s). Raises ImageError naming the URL and which limit was hit or what was
    wrong with the response."""
    timeout = URL_TIMEOUT_S if timeout is None else timeout
    max_bytes = URL_MAX_BYTES if max_bytes is None else max_bytes
    try:
        scheme = urllib.parse.urlparse(url).scheme.lower()
    except ValueError as exc:
        raise ImageError(url, f"not a valid URL ({exc})") from exc
    if scheme not in ("http", "https"):
        raise ImageError(url, f"only http and https URLs are allowed, not {scheme!r}")
    try:
        data, kind = _download(url, _Deadline(timeout), max_bytes)
    except ImageError:
        raise
    except Exception as exc:
        error = _download_error(url, exc, timeout)
        if error is None:  # not a failure of the download: a bug, with its traceback
            raise
        raise error from exc
    if kind.startswith("text/"):
        raise ImageError(url, f"the server sent {kind}, not an image")
    return data


def _download(url: str, deadline: _Deadline, max_bytes: int) -> tuple[bytes, str]:
    request = urllib.request.Request(url, headers={"User-Agent": "pixlearn"})
    opener = urllib.request.build_opener(_HttpOnlyRedirects, _HTTPHandler(deadline), _HTTPSHandler(deadline))
    with opener.open(request, timeout=deadline.seconds) as response:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise ImageError(url, f"the server declares {int(declared):,} bytes, over the {max_bytes:,} limit")
        expected = getattr(response, "length", None)  # None: chunked, or read until the server closes
        data = _read_limited(response, url, max_bytes)
        if expected is not None and len(data) < expected:
            # http.client returns the bytes received so far when the server closes early.
            raise ImageError(url, f"the connection closed after {len(data):,} of {expected:,} bytes")
        return data, response.headers.get_content_type()


def _read_limited(response: Any, url: str, max_bytes: int) -> bytes:
    # Every read waits at most for the time left (_DeadlineReader), so no check of the clock is needed here.
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read(min(_CHUNK, max_bytes + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise ImageError(url, f"larger than the {max_bytes:,}-byte limit")
    return b"".join(chunks)


def _download_error(url: str, exc: Exception, timeout: float) -> ImageError | None:
    """The ImageError for a failed download, or None for an exception that is no download failure."""
    if isinstance(exc, urllib.error.HTTPError):
        if 300 <= exc.code < 400:  # urllib gives up on a redirect loop or after max_redirections
            return ImageError(url, f"too many redirects (more than {MAX_REDIRECTS}, or a loop)")
        return ImageError(url, f"HTTP error {exc.code} {_brief(exc.reason)}")
    # urllib wraps what fails while connecting and sending in URLError; what fails later comes as is.
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return ImageError(url, f"could not download: timed out (took longer than {timeout:g} s)")
    if isinstance(reason, http.client.RemoteDisconnected):
        return ImageError(url, "not a valid HTTP response (the server closed the connection without one)")
    if isinstance(reason, OSError | str):  # connection refused or reset, TLS errors, "no host given"
        return ImageError(url, f"could not download: {_brief(reason)}")
    if isinstance(reason, http.client.InvalidURL | ValueError):  # a bad port, host name or character
        return ImageError(url, f"not a valid URL ({_brief(reason)})")
    if isinstance(reason, http.client.IncompleteRead):
        return ImageError(url, "the chunked body was cut short or malformed")
    if isinstance(reason, http.client.BadStatusLine):  # an HTTP/0.9 reply has no status line at all
        return ImageError(url, f"not a valid HTTP response (status line '{_brief(reason.line)}')")
    if isinstance(reason, http.client.HTTPException):  # LineTooLong, more than 100 headers, ...
        return ImageError(url, f"not a valid HTTP response ({_brief(reason)})")
    return None


def _brief(text: object, limit: int = 80) -> str:
    """`text` on one line, in printable ASCII, at most about `limit` characters: what a server sent
    goes into a message, and neither its control characters nor its length may."""
    text = str(text) if not isinstance(text, str) else text
    shown = ascii(text[:limit])[1:-1]
    return shown + ("..." if len(text) > limit else "")
