"""A local WhatsApp Cloud API for benchmarks: `POST /{version}/{phone_number_id}/messages`.

Run:  python bench/graph_stub.py --port 8123 --token T --phone-number-id PN

Answers every authorised send with `{"messages": [{"id": "wamid.<uuid>"}]}` and records
when it arrived, for whom and under which `biz_opaque_callback_data`, so a benchmark can
count sends per follow-up (duplicates) and measure when each message really left traza.
`GET /_bench/sends` returns the records as JSON: `[[callback, to, type, unix_time], ...]`.

Hand-written HTTP/1.1 over asyncio streams (keep-alive, Content-Length bodies), like
`_support.RawClient`: on a 2-core machine a framework's per-request cost would be taken
from the workers being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

Record = tuple[str | None, str | None, str | None, float]


class GraphStub:
    def __init__(self, token: str, phone_number_id: str) -> None:
        self.auth = f"Bearer {token}".encode()
        self.path_suffix = f"/{phone_number_id}/messages".encode()
        self.sends: list[Record] = []
        self.refused = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.split(b"\r\n")
                method, path, _ = lines[0].split(b" ", 2)
                headers: dict[bytes, bytes] = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(b":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
                status, payload = self.answer(method, path, headers, body)
                data = json.dumps(payload, separators=(",", ":")).encode()
                writer.write(
                    b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s"
                    % (status, b"OK" if status == 200 else b"Error", len(data), data)
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    def answer(
        self, method: bytes, path: bytes, headers: dict[bytes, bytes], body: bytes
    ) -> tuple[int, Any]:
        if method == b"GET" and path == b"/_bench/sends":
            return 200, self.sends
        if method != b"POST" or not path.endswith(self.path_suffix):
            return 404, {"error": {"code": 100, "message": "Unknown path"}}
        if headers.get(b"authorization") != self.auth:
            self.refused += 1
            return 401, {"error": {"code": 190, "message": "Invalid OAuth access token"}}
        message = json.loads(body)
        if message.get("status") == "read":
            return 200, {"success": True}
        self.sends.append(
            (
                message.get("biz_opaque_callback_data"),
                message.get("to"),
                message.get("type"),
                time.time(),
            )
        )
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": message.get("to"), "wa_id": message.get("to")}],
            "messages": [{"id": f"wamid.bench.{uuid.uuid4().hex}"}],
        }


async def serve(port: int, token: str, phone_number_id: str) -> None:
    stub = GraphStub(token, phone_number_id)
    server = await asyncio.start_server(stub.handle, "127.0.0.1", port, backlog=1024)
    print(f"graph stub listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--phone-number-id", required=True)
    args = parser.parse_args()
    run: Any = asyncio.run
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        pass
    try:
        run(serve(args.port, args.token, args.phone_number_id))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
