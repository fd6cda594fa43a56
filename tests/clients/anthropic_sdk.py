"""Sends requests through portcullis with the official Anthropic Python SDK, unmodified.

usage: anthropic_sdk.py BASE_URL CA_FILE COUNT

Each request is a POST to the mock upstream's /v1/echo, made with the SDK's own client, so
the TLS stack (CPython's ssl, OpenSSL), the HTTP stack (httpx) and the headers are exactly the
SDK's. Prints one JSON object per request: the headers the upstream received.
"""

import json
import sys

import anthropic


def main() -> None:
    base_url, ca_file, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = anthropic.Anthropic(
        api_key="sk-sdk-test",
        base_url=base_url,
        http_client=anthropic.DefaultHttpxClient(verify=ca_file),
        max_retries=0,
    )
    body = {"model": "test-model", "max_tokens": 8, "messages": []}
    for _ in range(count):
        echoed = client.post("/v1/echo", body=body, cast_to=object)
        print(json.dumps(echoed["headers"]), flush=True)


if __name__ == "__main__":
    main()
