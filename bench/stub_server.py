"""A module / collector stand-in for the benchmarks: answers every POST at once.

    .venv/bin/python bench/stub_server.py --port 8123

One asyncio HTTP/1.1 server (keep-alive, ``Content-Length`` bodies) in one process:
every POST gets ``{"response_action": "chat", "chat_message": "ok"}``, ``GET /_stats``
gives ``{"posts": N}``, any other GET ``{"status": "ok"}``. The stand-in for a module
that answers at once should cost the shared 2-core box as little as possible: a WSGI
app under gunicorn spent about 0.5 ms of CPU a request, which the router benchmark's
command case then lacks; this spends about a tenth of that. Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import json

ANSWER = json.dumps({"response_action": "chat", "chat_message": "ok"}).encode()
HEALTH = b'{"status": "ok"}'
MAX_HEAD = 64 * 1024


class StubServer(asyncio.Protocol):
    """One connection: parse requests as they arrive, answer each in order."""

    posts = 0

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._answer(431, b'{"error": "headers too large"}', close=True)
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            try:
                method, path, version = lines[0].split(" ", 2)
            except ValueError:
                self._answer(400, b'{"error": "bad request line"}', close=True)
                return
            length, close = 0, version == "HTTP/1.0"
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection":
                    close = value.strip().lower() == "close"
                elif name == "transfer-encoding":
                    self._answer(411, b'{"error": "send a Content-Length"}', close=True)
                    return
            if len(self.buffer) < end + 4 + length:
                return  # the body is still on its way
            del self.buffer[: end + 4 + length]
            if method == "POST":
                StubServer.posts += 1
                body = ANSWER
            elif path == "/_stats":
                body = json.dumps({"posts": StubServer.posts}).encode()
            else:
                body = HEALTH
            self._answer(200, body, close=close)
            if close:
                return

    def _answer(self, status: int, body: bytes, *, close: bool) -> None:
        reason = {200: "OK", 400: "Bad Request", 411: "Length Required"}.get(
            status, "Request Header Fields Too Large"
        )
        connection = "Connection: close\r\n" if close else ""
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{connection}\r\n"
        )
        self.transport.write(head.encode() + body)
        if close:
            self.transport.close()


async def serve(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(
        StubServer, host, port, reuse_address=True, backlog=1024
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
