"""Ports and hosts: the base/data port convention, loopback and same-host tests, and who holds a port.

A server's control channel is its base port and its data channel is base + :data:`DATA_PORT_OFFSET`, so a
viewer is named by one number. Whether a host is *this* machine decides two things: a sender may use
shared memory only with a local viewer, and a server may skip CURVE only on loopback.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
from functools import lru_cache

DATA_PORT_OFFSET = 1000

#: the default bind address: nothing beyond this machine can connect unless asked for
DEFAULT_HOST = "127.0.0.1"


def data_port(base_port: int) -> int:
    """The data channel's port for a server whose control channel is ``base_port``."""
    return base_port + DATA_PORT_OFFSET


def check_base_port(port: int) -> int:
    """Reject ports whose data port would not exist (base + 1000 must stay below 65536)."""
    if not 1 <= port <= 65535 - DATA_PORT_OFFSET:
        raise ValueError(f"base port {port} must be 1..{65535 - DATA_PORT_OFFSET} (its data port is base+1000)")
    return port


def _resolve(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        return []
    return sorted({str(info[4][0]) for info in infos})  # an IPv4/IPv6 address string for TCP results


def resolve_host(host: str) -> str:
    """An address ZMQ can bind or connect to: '*' and IPs as given, names resolved (IPv4 first)."""
    if host in ("*", "0.0.0.0", "::"):
        return host
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(host))
    addresses = _resolve(host)
    if not addresses:
        raise ValueError(f"host {host!r} does not resolve to an address")
    ipv4 = [a for a in addresses if ":" not in a]
    return (ipv4 or addresses)[0]


#: bind addresses that mean "every interface": nothing can connect *to* them, so clients use loopback
WILDCARD_HOSTS = ("*", "0.0.0.0", "::", "")


def connect_host(host: str) -> str:
    """The address a client on this machine connects to for a server bound to ``host``.

    A wildcard bind (``*``, ``0.0.0.0``, ``::``) is reachable on loopback; ``tcp://*:port`` is not an
    address ZMQ can connect to and failed with a raw ``ZMQError``.
    """
    if host in WILDCARD_HOSTS:
        return "::1" if host == "::" else "127.0.0.1"
    return host


def tcp_endpoint(host: str, port: int) -> str:
    """``tcp://host:port`` with IPv6 addresses bracketed."""
    address = resolve_host(host)
    if ":" in address:
        address = f"[{address}]"
    return f"tcp://{address}:{port}"


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address (so nothing remote can reach it)."""
    if host in WILDCARD_HOSTS:
        return False
    addresses = [host] if _is_ip(host) else _resolve(host)
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=64)
def is_local_host(host: str) -> bool:
    """True when ``host`` is this machine: loopback, or an address some local interface owns.

    An address is local exactly when a socket can bind to it, so this needs no interface listing.
    """
    if host in ("*", "0.0.0.0", "::") or is_loopback(host):
        return True
    for address in [host] if _is_ip(host) else _resolve(host):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((address, 0))
            except OSError:
                continue
            return True
    return False


def port_is_free(host: str, port: int) -> bool:
    """Whether a TCP listener could bind ``host:port`` right now."""
    address = resolve_host(host)
    if address == "*":
        address = "0.0.0.0"
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def find_free_base_port(host: str = DEFAULT_HOST, start: int = 20000, stop: int = 40000) -> int:
    """A base port whose control and data ports are both free (for tests and benchmarks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((resolve_host(host), 0))
        seed = probe.getsockname()[1]
    span = stop - start
    for offset in range(span):
        port = start + (seed + offset * 7) % span
        if port_is_free(host, port) and port_is_free(host, data_port(port)):
            return port
    raise RuntimeError(f"no free base port between {start} and {stop}")


def port_holder(port: int) -> str:
    """Who listens on a TCP port, in words (pid, name and command line), for error messages.

    Uses psutil when it is installed; without it (or without permission to see other users' sockets)
    the answer says so instead of guessing.
    """
    try:
        import psutil
    except ImportError:
        return "an unknown process (install psutil to see which)"
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return "a process this user may not inspect"
    for conn in connections:
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            if conn.pid is None:
                return "a process of another user"
            try:
                proc = psutil.Process(conn.pid)
                command = " ".join(proc.cmdline()) or proc.name()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                return f"pid {conn.pid}"
            return f"pid {conn.pid} ({command[:300]})"
    return "a socket that is closing, or a listener in another network namespace"
