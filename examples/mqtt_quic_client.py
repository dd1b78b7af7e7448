"""The entry-level client: connect, publish a reading, wait for one command, leave.

Start a broker and the gateway in front of it, e.g.

    mosquitto -p 1883 &
    python -m mqttquic gateway --upstream 127.0.0.1:1883

then run this with the CA the gateway printed (or a config file, see
mqtt-quic-config.example.json beside this file):

    python examples/mqtt_quic_client.py --ca-file /tmp/mqttquic-gateway-.../ca.pem
    python examples/mqtt_quic_client.py --config my-device.json

QUIC is tried first; where UDP is blocked the same code runs over TCP+TLS.
"""

from __future__ import annotations

import argparse
import asyncio

from mqttquic import Client, ConnectError, ConnectionConfig


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="a ConnectionConfig JSON file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ca-file", help="the gateway's CA (it prints where it wrote it)")
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--device-id", default="sensor-1")
    parser.add_argument("--wait", type=float, default=5.0, help="seconds to wait for a command")
    args = parser.parse_args()

    if args.config:
        config = ConnectionConfig.from_file(args.config)
    else:
        config = ConnectionConfig(host=args.host, ca_file=args.ca_file,
                                  server_name=args.server_name, device_id=args.device_id)
    device = config.device_id or config.effective_client_id
    try:
        async with Client(config) as client:
            print(f"connected over {client.transport_type.value}")
            await client.subscribe(f"devices/{device}/commands", qos=1)
            await client.publish(f"devices/{device}/telemetry", {"temperature": 21.5}, qos=1)
            print("reading published and acknowledged")
            try:
                async with asyncio.timeout(args.wait):
                    async for message in client.messages():
                        print(f"command on {message.topic}: {message.payload!r}")
                        break
            except TimeoutError:
                print(f"no command within {args.wait:g} s")
    except ConnectError as exc:
        print(f"could not connect: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
