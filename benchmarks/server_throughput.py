"""Server throughput with concurrent clients against the same requests sent one after another, and
time-to-first-token for 10 s of audio.

Starts `audior1 serve` (a subprocess on 127.0.0.1, a free port) on a checkpoint (default: a fresh `demo`
preset), then:
- concurrent: `--clients` requests (different prompts, each with 2 s of audio, `--tokens` new tokens,
  ignore_eos so every request generates exactly that many) sent at once from as many threads;
- sequential: the same requests one after another (the baseline);
- ttft: streaming requests with 10 s of audio on an idle server: time from sending to the first streamed
  token (reasoning or answer), best and median of `--ttft-runs`.
Prints one JSON object; the server is stopped at the end.

    python benchmarks/server_throughput.py [--model DIR] [--clients 8] [--tokens 128]
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from decode_speed import tone_wav  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir, port: int, *extra: str, log=subprocess.DEVNULL, timeout: float = 120) -> subprocess.Popen:
    """`audior1 serve` on `port` (output to `log`), returned once /health answers; SystemExit if it does not."""
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "audior1.cli", "serve", "--model", str(model_dir), "--port",
                               str(port), "--log-level", "warning", *extra], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise SystemExit("the server did not start")
        time.sleep(0.2)


def request_body(i: int, audio_b64: str, tokens: int) -> dict:
    return {"messages": [{"role": "user", "content": [
        {"type": "text", "text": f"Question {i}: what do you hear in this clip, and how long is it?"},
        {"type": "input_audio", "input_audio": {"data": audio_b64, "format": "wav"}}]}],
        "max_tokens": tokens, "temperature": 0.7, "seed": i, "ignore_eos": True}


def post(client: httpx.Client, url: str, body: dict) -> int:
    r = client.post(url + "/v1/chat/completions", json=body, timeout=600)
    r.raise_for_status()
    return r.json()["usage"]["completion_tokens"]


def concurrent(url: str, bodies: list[dict], clients: list[httpx.Client]) -> tuple[float, int]:
    """All requests at once, one thread and one (already open) client each."""
    counts = [0] * len(bodies)
    go = threading.Barrier(len(bodies) + 1)

    def run(i):
        go.wait()
        counts[i] = post(clients[i], url, bodies[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    go.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, sum(counts)


def sequential(url: str, bodies: list[dict], clients: list[httpx.Client]) -> tuple[float, int]:
    """The same requests one after another, through one client."""
    t0 = time.perf_counter()
    total = sum(post(clients[0], url, b) for b in bodies)
    return time.perf_counter() - t0, total


def time_to_first_token(url: str, audio_b64: str) -> float:
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Describe the sound."},
        {"type": "input_audio", "input_audio": {"data": audio_b64, "format": "wav"}}]}],
        "max_tokens": 8, "temperature": 0.7, "seed": 0, "stream": True, "ignore_eos": True}
    t0 = time.perf_counter()
    first = None
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=120) as r:
        for line in r.iter_lines():  # read to the end: the request finishes before the next one starts
            if first is not None or not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or [{}]
            delta = choices[0].get("delta") or {}
            if delta.get("reasoning_content") or delta.get("content"):
                first = time.perf_counter() - t0
    return first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="checkpoint directory (default: a fresh `demo` preset)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--ttft-runs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2, help="runs of each mode; the best is reported")
    ap.add_argument("--threads", type=int, default=1, help="the server's torch threads (1: see decode_speed.py)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            from audior1.checkpoint import init_checkpoint

            model_dir = tmp
            init_checkpoint("demo", model_dir, seed=0)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(model_dir, port, "--threads", str(args.threads))
        try:
            short = base64.b64encode(tone_wav(2.0)).decode()
            ten = base64.b64encode(tone_wav(10.0)).decode()
            bodies = [request_body(i, short, args.tokens) for i in range(args.clients)]
            clients = [httpx.Client() for _ in bodies]  # opened (and connected, by the warm-up) untimed
            concurrent(url, bodies, clients)  # warm-up
            best = {"concurrent": (float("inf"), 0), "sequential": (float("inf"), 0)}
            for _ in range(args.repeats):
                for name, fn in (("concurrent", concurrent), ("sequential", sequential)):
                    result = fn(url, bodies, clients)
                    best[name] = min(best[name], result)
            for client in clients:
                client.close()
            rate = {k: n / t for k, (t, n) in best.items()}
            ttft = [time_to_first_token(url, ten) for _ in range(args.ttft_runs)]
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
    print(json.dumps({
        "benchmark": "server_throughput",
        "model": args.model or "demo preset (random weights)",
        "clients": args.clients, "tokens_per_request": args.tokens, "audio_per_request_s": 2.0,
        "server_threads": args.threads,
        "concurrent": {"seconds": round(best["concurrent"][0], 3), "tokens": best["concurrent"][1],
                       "tokens_per_s": round(rate["concurrent"], 1)},
        "sequential": {"seconds": round(best["sequential"][0], 3), "tokens": best["sequential"][1],
                       "tokens_per_s": round(rate["sequential"], 1)},
        "speedup": round(rate["concurrent"] / rate["sequential"], 2),
        "ttft_10s_audio_s": {"best": round(min(ttft), 4), "median": round(statistics.median(ttft), 4),
                             "runs": [round(t, 4) for t in ttft]},
    }, indent=2))


if __name__ == "__main__":
    main()
