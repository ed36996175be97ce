"""Fail on any network use other than loopback: an audit hook, installed in the test process by
conftest.py and in the subprocesses that tests start (``python -c`` + ``GUARD``)."""
import socket
import sys

LOCAL = ("127.", "::1", "localhost", "0.0.0.0")


def is_local(address) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths
        return True
    host = str(address[0] or "")
    return host == "" or host.startswith(LOCAL) or host == "::ffff:127.0.0.1"


attempts: list[str] = []


def hook(event, args):
    if event == "socket.connect" and args[0].family in (socket.AF_INET, socket.AF_INET6) and not is_local(args[1]):
        attempts.append(f"connect {args[1]}")
        raise OSError(f"network use in a test: connect to {args[1]}")
    if event in ("socket.getaddrinfo", "socket.gethostbyname") and not is_local((args[0],)):
        attempts.append(f"{event} {args[0]}")
        raise OSError(f"network use in a test: {event} {args[0]}")


def install() -> None:
    sys.addaudithook(hook)


# For subprocesses: run the marionet CLI with the hook installed; exit 99 if it tried the network.
GUARD = ("import sys, netguard; netguard.install(); from marionet.cli import main; code = main(sys.argv[1:]); "
         "sys.exit(99 if netguard.attempts else code)")
