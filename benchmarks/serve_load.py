"""Load on `polymodal serve` over loopback: an avdigits model (image + audio) served in its own process; every
request uploads one test row's PNG and WAV (multipart, 64 different rows in turn), so decoding is in every measured
request. For 1, 8, 32 and 64 concurrent connections, with micro-batching on (--max-batch 32) and off
(--max-batch 1): p50/p95/p99 latency, throughput, failures, and the server's RSS. The load comes from `wrk` (C, one
thread: `apt-get install wrk`) when installed, else from an asyncio client (httpx, keep-alive), which on 2 cores
takes much of the CPU the server needs (it measured 2.5x where wrk measures 6x for batching on vs off). The 60 s
run at 64 clients (failures, memory over time) uses the asyncio client. Then schemathesis over the whole OpenAPI
schema (0 server errors is the goal).

    .venv/bin/python benchmarks/serve_load.py [--model DIR] [--seconds 20] [--long 60] [--client wrk|httpx]

Without --model, trains the quick form's default on ../shared/data/avdigits (2 epochs; accuracy printed, not the
point). Prints markdown tables and writes results.json under --out.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "avdigits"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(out: Path) -> Path:
    import polymodal as pm

    if (out / "config.json").exists():
        return out
    t = time.time()
    model = pm.fit(str(DATA / "train.jsonl"), test=str(DATA / "test.jsonl"), label="label",
                   inputs=["image", "audio"], out=out, epochs=2, progress=False)
    print(f"trained {out} in {time.time() - t:.0f} s: test accuracy {model.metrics['test']['accuracy']:.4f}",
          flush=True)
    return out


class Server:
    def __init__(self, model: Path, max_batch: int, key: str = "bench") -> None:
        self.port, self.key = free_port(), key
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "polymodal", "serve", str(model), "--port", str(self.port), "--api-key", key,
               "--max-batch", str(max_batch), "--max-wait-ms", "5"]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        import httpx

        for _ in range(600):
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read())
            time.sleep(0.1)
        raise RuntimeError("server not ready")

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def payloads(n: int = 64) -> list[dict]:
    rows = [json.loads(line) for line in (DATA / "test.jsonl").read_text().splitlines()[:n]]
    return [{"image": ("x.png", (DATA / r["image"]).read_bytes(), "image/png"),
             "audio": ("x.wav", (DATA / r["audio"]).read_bytes(), "audio/wav")} for r in rows]


async def drive(server: Server, clients: int, seconds: float, files: list[dict]) -> dict:
    import httpx

    latencies: list[float] = []
    failures: dict[str, int] = {}
    rss: list[float] = []
    stop = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {server.key}"}

    async def client(i: int) -> None:
        rng = random.Random(i)
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as http:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                try:
                    r = await http.post("/v1/predict", files=files[rng.randrange(len(files))])
                    ok = r.status_code == 200
                    key = str(r.status_code)
                except httpx.HTTPError as e:
                    ok, key = False, type(e).__name__
                if ok:
                    latencies.append(time.perf_counter() - t)
                else:
                    failures[key] = failures.get(key, 0) + 1

    async def watch() -> None:
        while time.perf_counter() < stop:
            rss.append(server.rss_mb())
            await asyncio.sleep(1.0)

    start = time.perf_counter()
    await asyncio.gather(watch(), *(client(i) for i in range(clients)))
    wall = time.perf_counter() - start
    lat = np.asarray(latencies) * 1000
    return {"clients": clients, "requests": len(latencies), "failed": sum(failures.values()), "failures": failures,
            "throughput_rps": round(len(latencies) / wall, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
            "p95_ms": round(float(np.percentile(lat, 95)), 1) if lat.size else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
            "rss_mb_first": round(rss[0], 1) if rss else None, "rss_mb_last": round(rss[-1], 1) if rss else None,
            "rss_mb_max": round(max(rss), 1) if rss else None}


WRK_SCRIPT = """
local bodies = {}
for i = 0, %(n)d - 1 do
  local f = io.open("%(dir)s/body" .. i .. ".bin", "rb"); bodies[#bodies + 1] = f:read("*a"); f:close()
end
local k = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=%(boundary)s"
wrk.headers["Authorization"] = "Bearer %(key)s"
request = function()
  k = k %% #bodies + 1
  return wrk.format(nil, nil, nil, bodies[k])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%.3f %%.3f %%.3f\\n", summary.requests,
    e.connect + e.read + e.write + e.timeout, e.status, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


def wrk_script(files: list[dict], key: str, directory: Path) -> Path:
    """The multipart bodies on disk and a wrk Lua script that sends them in turn and prints its percentiles."""
    boundary = "polymodalbench"
    directory.mkdir(parents=True, exist_ok=True)
    for i, fields in enumerate(files):
        body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{fn}"\r\n'
                        f"Content-Type: {kind}\r\n\r\n".encode() + data + b"\r\n"
                        for name, (fn, data, kind) in fields.items()) + f"--{boundary}--\r\n".encode()
        (directory / f"body{i}.bin").write_bytes(body)
    script = directory / "post.lua"
    script.write_text(WRK_SCRIPT % {"n": len(files), "dir": directory, "boundary": boundary, "key": key})
    return script


def drive_wrk(server: Server, clients: int, seconds: float, script: Path) -> dict:
    import psutil

    proc = subprocess.Popen(["wrk", "-t1", f"-c{clients}", f"-d{int(seconds)}s", "--timeout", "30s", "-s",
                             str(script), server.url + "/v1/predict"], stdout=subprocess.PIPE, text=True)
    rss = []
    while proc.poll() is None:
        rss.append(psutil.Process(server.proc.pid).memory_info().rss / 2**20)
        time.sleep(1.0)
    out = proc.stdout.read()
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {out}")
    n, socket_errors, status_errors, micros, p50, p95, p99 = line.split()[1:]
    ok = int(n) - int(status_errors)
    return {"clients": clients, "requests": ok, "failed": int(socket_errors) + int(status_errors),
            "failures": {"socket": int(socket_errors), "status": int(status_errors)},
            "throughput_rps": round(ok / (int(micros) / 1e6), 1), "p50_ms": round(float(p50), 1),
            "p95_ms": round(float(p95), 1), "p99_ms": round(float(p99), 1),
            "rss_mb_first": round(rss[0], 1) if rss else None, "rss_mb_last": round(rss[-1], 1) if rss else None,
            "rss_mb_max": round(max(rss), 1) if rss else None, "client": "wrk"}


def fuzz(server: Server, seconds: int, cwd: Path) -> dict:
    """schemathesis over the served OpenAPI schema: the not_a_server_error check on every operation."""
    cmd = [str(Path(sys.executable).with_name("schemathesis")), "run", server.url + "/openapi.json",
           "--checks", "not_a_server_error", "--max-time", str(seconds), "--workers", "1",
           "-H", f"Authorization: Bearer {server.key}", "--suppress-health-check", "all"]
    t = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)  # its cache lands in --out
    tail = proc.stdout[-3000:]
    return {"exit_code": proc.returncode, "seconds": round(time.time() - t), "summary": tail}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--long", type=float, default=60.0, help="the 64-client memory run (batching on)")
    ap.add_argument("--clients", default="1,8,32,64")
    ap.add_argument("--fuzz-seconds", type=int, default=120)
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds of load before measuring (wrk)")
    ap.add_argument("--out", type=Path, default=Path("runs/serve_load"))
    ap.add_argument("--client", choices=("wrk", "httpx"), default="wrk" if shutil.which("wrk") else "httpx")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.model or train(args.out / "avdigits_model")
    files = payloads()
    results: dict = {"model": str(model), "cpus": os.cpu_count(), "client": args.client, "runs": []}
    for batching, max_batch in (("on", 32), ("off", 1)):
        server = Server(model, max_batch)
        try:
            script = wrk_script(files, server.key, args.out / "wrk")
            if args.client == "wrk":  # steady state: batch shapes seen, allocator and kernel caches warm
                drive_wrk(server, 32, args.warmup, script)
            for c in [int(x) for x in args.clients.split(",")]:
                r = drive_wrk(server, c, args.seconds, script) if args.client == "wrk" else \
                    asyncio.run(drive(server, c, args.seconds, files))
                r["batching"] = batching
                results["runs"].append(r)
                print(json.dumps(r), flush=True)
            if batching == "on":
                long = asyncio.run(drive(server, 64, args.long, files))
                long["batching"] = "on"
                results["long"] = long
                print("long:", json.dumps(long), flush=True)
                results["fuzz"] = fuzz(server, args.fuzz_seconds, args.out)
                print("fuzz exit", results["fuzz"]["exit_code"], results["fuzz"]["summary"][-1500:], flush=True)
        finally:
            server.close()
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print("\n| batching | clients | requests | failed | throughput (req/s) | p50 ms | p95 ms | p99 ms | RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        print(f"| {r['batching']} | {r['clients']} | {r['requests']} | {r['failed']} | {r['throughput_rps']} | "
              f"{r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['rss_mb_max']} |")
    on = {r["clients"]: r for r in results["runs"] if r["batching"] == "on"}
    off = {r["clients"]: r for r in results["runs"] if r["batching"] == "off"}
    for c in sorted(set(on) & set(off)):
        print(f"clients {c}: batching on/off throughput {on[c]['throughput_rps'] / off[c]['throughput_rps']:.2f}x")
    long = results["long"]
    print(f"64 clients for {args.long:.0f} s: {long['requests']} requests, {long['failed']} failed, RSS "
          f"{long['rss_mb_first']} -> {long['rss_mb_last']} MB (max {long['rss_mb_max']})")


if __name__ == "__main__":
    main()
