"""API server throughput: one stream, and all streams together at 1, 4 and 16 concurrent requests.

Starts a real ``tuneforge api`` process (the embedded default model unless --adapter is given)
on 127.0.0.1, then, for each concurrency level, runs that many clients that each send
streaming chat requests back to back (greedy, different questions). Reported per level:
completion tokens per second of one stream (from its first token to its last), total
completion tokens per second across all streams, and the mean time to the first token.
Run: ``python benchmarks/serve_throughput.py [--concurrency 1,4,16] [--max-tokens 64]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

QUESTIONS = [
    "Explain how a rainbow forms.",
    "Give three tips for learning a language.",
    "What does a compiler do?",
    "Describe the water cycle.",
    "Why is the sky blue?",
    "How do vaccines work?",
    "What is a prime number?",
    "Summarise the plot of Hamlet.",
    "请介绍一下长城。",
    "如何学习编程？",
    "What is machine learning?",
    "How does a bicycle stay up?",
    "Name the planets of the solar system.",
    "What is photosynthesis?",
    "How do I make a cup of tea?",
    "What causes the seasons?",
]


@dataclass(frozen=True)
class Stream:
    tokens: int
    first_token_s: float
    seconds: float


async def one_stream(http: httpx.AsyncClient, question: str, max_tokens: int) -> Stream:
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first = None
    tokens = 0
    async with http.stream("POST", "/v1/chat/completions", json=body) as reply:
        reply.raise_for_status()
        async for line in reply.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[len("data: ") :])
            if first is None and any(c["delta"].get("content") for c in event["choices"]):
                first = time.perf_counter()
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
    end = time.perf_counter()
    first = first or end
    return Stream(tokens, first - start, end - first)


async def level(url: str, concurrency: int, rounds: int, max_tokens: int) -> dict:
    async def client(index: int, http: httpx.AsyncClient) -> list[Stream]:
        return [
            await one_stream(
                http, QUESTIONS[(index + r * concurrency) % len(QUESTIONS)], max_tokens
            )
            for r in range(rounds)
        ]

    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(1800)) as http:
        start = time.perf_counter()
        results = await asyncio.gather(*(client(i, http) for i in range(concurrency)))
        wall = time.perf_counter() - start
    streams = [stream for streams in results for stream in streams]
    total = sum(stream.tokens for stream in streams)
    per_stream = [stream.tokens / stream.seconds for stream in streams if stream.seconds > 0]
    return {
        "concurrency": concurrency,
        "requests": len(streams),
        "tokens": total,
        "wall_s": wall,
        "total_tok_s": total / wall,
        "stream_tok_s": statistics.mean(per_stream) if per_stream else float("nan"),
        "first_token_s": statistics.mean(stream.first_token_s for stream in streams),
    }


def start_server(args: argparse.Namespace, port: int, log: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "tuneforge.cli",
        "--quiet",
        "api",
        "--port",
        str(port),
        "--max-batch",
        str(max(args.concurrency)),
        "--max-waiting",
        str(4 * max(args.concurrency)),
    ]
    if args.adapter:
        command += ["--adapter", args.adapter]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit(f"the server did not start; its log:\n{log.read_text()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--concurrency", default="1,4,16", type=lambda text: [int(n) for n in text.split(",")]
    )
    parser.add_argument("--rounds", type=int, default=2, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--adapter", help="serve this training output instead of the base model")
    args = parser.parse_args()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = Path(tempfile.mkdtemp(prefix="serve-bench-")) / "server.log"
    server = start_server(args, port, log)
    try:
        url = f"http://127.0.0.1:{port}"
        asyncio.run(level(url, 1, 1, 8))  # warm-up: first-call allocations, lazy imports
        rows = [asyncio.run(level(url, c, args.rounds, args.max_tokens)) for c in args.concurrency]
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(
        f"\nAPI server throughput, default model{' + ' + args.adapter if args.adapter else ''}, "
        f"greedy, max_tokens {args.max_tokens}, {args.rounds} requests per client "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)"
    )
    print(
        "| concurrent | requests | tokens | wall s | total tok/s | one stream tok/s "
        "| first token s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['concurrency']} | {row['requests']} | {row['tokens']} | "
            f"{row['wall_s']:.1f} | {row['total_tok_s']:.1f} | {row['stream_tok_s']:.1f} | "
            f"{row['first_token_s']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
