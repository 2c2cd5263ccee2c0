#!/usr/bin/env python3
"""A static HTTP(S) server for end-to-end tests: it stands in for the machine config server and
the provisioning server.

Serves the files under --dir on 127.0.0.1, over TLS when --cert/--key are given, on --port (or a
free port) that it prints as "PORT <n>" on stdout once it is listening. Each request is appended to --log as one
JSON line: method, path, status, time (Unix seconds, so that tests can order the requests that
several servers saw), and the headers a test may check (User-Agent, Accept, and any
X-Kindling-* header). Only the Python 3 standard library is used, so nothing needs installing.

    https_server.py --dir DIR --cert server.pem --key server.key --log requests.jsonl
"""

import argparse
import functools
import http.server
import json
import ssl
import sys
import threading
import time


class Handler(http.server.SimpleHTTPRequestHandler):
    log_path = None
    log_lock = threading.Lock()

    def log_request(self, code="-", size="-"):
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() in ("user-agent", "accept") or name.lower().startswith("x-kindling-")
        }
        entry = {
            "method": self.command,
            "path": self.path,
            "status": int(code) if str(code).isdigit() else code,
            "time": time.time(),
            "headers": headers,
        }
        with self.log_lock, open(self.log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")

    def log_message(self, format, *args):
        # Errors go to stderr, which the test shows if the server fails; access lines are in --log.
        sys.stderr.write("%s\n" % (format % args))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()

    Handler.log_path = args.log
    handler = functools.partial(Handler, directory=args.dir)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
