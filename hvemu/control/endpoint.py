"""QEMU's character-device socket spellings, for --qmp and --gdb, and listening on them.

    unix:PATH[,server[=on]][,wait=off|on]
    tcp:[HOST]:PORT[,server[=on]][,wait=off|on]      (HOST defaults to 127.0.0.1)

Only server sockets are offered (hvemu never connects out).  A path or port that
something else already uses is refused with one line (EndpointError, exit 69); a stale
socket file nobody listens on is replaced, as QEMU does."""
from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass

from ..errors import EX_UNAVAILABLE, HvemuError, UsageError


class EndpointError(HvemuError):
    """A socket hvemu was asked to listen on cannot be had (in use, not permitted)."""

    exit_code = EX_UNAVAILABLE


@dataclass
class Endpoint:
    kind: str                 # "unix" or "tcp"
    path: str = ""
    host: str = "127.0.0.1"
    port: int = 0
    wait: bool = False        # wait for the first client before the guest runs

    def describe(self) -> str:
        return f"unix:{self.path}" if self.kind == "unix" else f"tcp:{self.host}:{self.port}"


def _flag(value: str, option: str, spec: str) -> bool:
    if value in ("", "on", "yes", "true"):
        return True
    if value in ("off", "no", "false"):
        return False
    raise UsageError(f"{option} {spec!r}: {value!r} is not on or off")


def parse_endpoint(spec: str, option: str, wait_default: bool = True,
                   need_server: bool = True) -> Endpoint:
    """An Endpoint from QEMU's spelling (`--qmp unix:/tmp/q.sock,server,wait=off`)."""
    head, *opts = spec.split(",")
    server = not need_server
    wait = wait_default
    for opt in opts:
        key, _, value = opt.partition("=")
        if key == "server":
            server = _flag(value, option, spec)
        elif key in ("wait", "nowait"):
            wait = _flag(value, option, spec) if key == "wait" else False
        else:
            raise UsageError(f"{option} {spec!r}: unknown option {key!r} "
                             "(give server and wait=on|off)")
    if not server:
        raise UsageError(f"{option} {spec!r}: hvemu only listens: add ,server")
    kind, sep, rest = head.partition(":")
    if not sep:
        raise UsageError(f"{option} {spec!r}: give unix:PATH or tcp:HOST:PORT")
    if kind == "unix":
        if not rest:
            raise UsageError(f"{option} {spec!r}: unix: needs a path")
        return Endpoint("unix", path=rest, wait=wait)
    if kind == "tcp":
        host, sep, port = rest.rpartition(":")
        if not sep or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f"{option} {spec!r}: give tcp:HOST:PORT with a port of 1 to 65535")
        return Endpoint("tcp", host=host.strip("[]") or "127.0.0.1", port=int(port), wait=wait)
    raise UsageError(f"{option} {spec!r}: {kind!r} sockets are not offered: "
                     "give unix:PATH or tcp:HOST:PORT")


def listen(ep: Endpoint, what: str) -> socket.socket:
    """A listening socket for ep, or EndpointError (one line) if it cannot be had."""
    if ep.kind == "unix":
        path = ep.path
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise EndpointError(f"{what} unix:{path}: {e.strerror}") from None
        if st is not None:
            if not stat.S_ISSOCK(st.st_mode):
                raise EndpointError(f"{what} unix:{path}: the path exists and is not a socket")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)                  # stale: nobody listens there
            else:
                raise EndpointError(f"{what} unix:{path}: the socket is in use "
                                    "(another program listens on it)")
            finally:
                probe.close()
        # bound and listening under a temporary name, then renamed: a client that waits
        # for the path to appear never finds it refusing connections
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        temporary = f"{path}.{os.getpid()}.tmp"
        try:
            s.bind(temporary)
            s.listen(4)
            os.rename(temporary, path)
        except OSError as e:
            s.close()
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise EndpointError(f"{what} unix:{path}: cannot listen "
                                f"({e.strerror or e})") from None
        return s
    else:
        try:
            infos = socket.getaddrinfo(ep.host, ep.port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise EndpointError(f"{what} tcp:{ep.host}:{ep.port}: {e.strerror}") from None
        family, _, _, _, addr = infos[0]
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            s.close()
            why = "the port is in use" if e.errno == 98 else e.strerror
            raise EndpointError(f"{what} tcp:{ep.host}:{ep.port}: cannot listen ({why})") \
                from None
    s.listen(4)
    return s


def close_listener(s: socket.socket, ep: Endpoint) -> None:
    try:
        s.close()
    finally:
        if ep.kind == "unix":
            try:
                os.unlink(ep.path)
            except OSError:
                pass
