"""Prints a free TCP port on 127.0.0.1 that is none of the ports given as arguments.

The kernel can hand out the same free port to two binds in a row, so a script that
needs several ports passes the ones it already chose (scripts/demo.sh, bench-lib.sh).
"""
import socket
import sys

taken = set(sys.argv[1:])
while True:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    if port not in taken:
        print(port)
        break
