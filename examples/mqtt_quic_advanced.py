"""The seed's advanced client, against a running gateway.

Start a broker and the gateway in front of it, e.g.

    mosquitto -p 1883 &
    python -m mqttquic gateway --upstream 127.0.0.1:1883

then run this with the CA the gateway printed:

    python examples/mqtt_quic_advanced.py --ca-file /tmp/mqttquic-gateway-.../ca.pem
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random

from mqttquic import ConnectError, ConnectionConfig, MQTTQUICAdvancedClient


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--quic-port", type=int, default=14567)
    parser.add_argument("--ca-file", help="the gateway's CA (it prints where it wrote it)")
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--device-id", default=f"device-{random.randint(1000, 9999)}")
    parser.add_argument("--wait", type=float, default=5.0, help="seconds to wait for commands")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")

    config = ConnectionConfig(host=args.host, quic_port=args.quic_port, device_id=args.device_id,
                              ca_file=args.ca_file, server_name=args.server_name)
    client = MQTTQUICAdvancedClient(config)
    try:
        await client.connect()
    except ConnectError as exc:
        print(f"could not connect: {exc}")
        return 1
    try:
        device = args.device_id
        await client.subscribe(f"device/{device}/commands/#", qos=1)
        messages = [
            {"topic": f"device/{device}/telemetry/temp", "payload": {"celsius": 21.5}, "qos": 1},
            {"topic": f"device/{device}/telemetry/humid", "payload": {"percent": 43.0}, "qos": 1},
            {"topic": f"device/{device}/telemetry/press", "payload": {"hpa": 1013.2}, "qos": 1},
        ]
        results = await client.publish_parallel(messages)
        print("publish_parallel:", json.dumps(results, indent=2))
        await client.publish(f"device/{device}/telemetry/sensors", {"uptime": 42}, qos=1)
        print(f"waiting {args.wait:.0f} s for commands on device/{device}/commands/# ...")
        try:
            async with asyncio.timeout(args.wait):
                async for message in client.messages():
                    print(f"command on {message.topic}: {message.payload.decode()}")
        except TimeoutError:
            pass
        print("stats:", json.dumps(client.get_stats(), indent=2))
    finally:
        await client.disconnect()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
