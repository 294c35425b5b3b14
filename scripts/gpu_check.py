#!/usr/bin/env python3
"""The GPU check (scripts/gpu-check.sh run): the server on a real GPU against in-process libtorch.

Runs from the repository root with what `scripts/gpu-check.sh build` staged in
target/gpu-check/stage (the tch-0.24 server, the load tester, the digits weights) and this machine's
torch (2.11; its torch/lib is the server's LD_LIBRARY_PATH). Steps:

1. models: digits (staged) and mlp (exported here by scripts/export_models.py, same seed);
2. correctness: the server on --device (cuda) and on cpu answer the same seeded rows, over HTTP and
   over gRPC (tritonclient.grpc, carried as wheels: the GPU machine's python has grpcio and protobuf
   but not tritonclient or python-rapidjson); all are compared with in-process torch on CPU:
   max |a - b| / max |b| must be < 1e-3 (libtorch keeps TF32 off for matmul by default, so GPU and
   CPU differ only in summation order);
3. throughput: the load tester (closed loop, binary tensors) at mlp with concurrency 1/32/128,
   dynamic batching on and off; the mean batch size of each point from /metrics; in-process torch on
   the same device at batch 1/32/128 and at each observed mean batch (copies to and from the device
   included, as the server does them), and the ratio server req/s / in-process rows/s;
4. /metrics: CUDA memory used/total.

Prints one table and writes gpu-check.md and gpu-check.json to --out. Exit 1 if correctness fails.
`--device cpu` rehearses the whole thing on a CPU-only machine (concurrency 1 and 8).
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGE = os.path.join(ROOT, "target", "gpu-check", "stage")
TOLERANCE = 1e-3


def log(*args):
    print(*args, flush=True)


def http(url, body=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


class Server:
    """The staged server binary as a process on port 0 (its address read from its JSON log)."""

    def __init__(self, models, device, extra=()):
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.path.join(os.path.dirname(torch.__file__), "lib")
        env["RUST_LOG"] = "info,torchship::access=off"
        cmd = [os.path.join(STAGE, "bin", "server"), "--port", "0", "--grpc-port", "0", "--log-format", "json",
               "--device", device, "--model-repository", models, *extra]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
        self.base = None
        for line in self.proc.stdout:
            try:
                fields = json.loads(line).get("fields", {})
            except ValueError:
                continue
            if fields.get("message") == "torchship server listening":
                self.base = "http://" + fields["addr"]
                self.grpc = fields.get("grpc_addr")
                break
        if self.base is None:
            raise SystemExit(f"server {' '.join(cmd)} exited before listening")
        self.lines = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if http(self.base + "/v2/health/ready", timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit("server never became ready")

    def infer(self, model, x):
        meta = json.loads(http(f"{self.base}/v2/models/{model}")[1])
        inp = meta["inputs"][0]
        body = {"inputs": [{"name": inp["name"], "shape": list(x.shape), "datatype": "FP32",
                            "data": x.flatten().tolist()}]}
        out = json.loads(http(f"{self.base}/v2/models/{model}/infer", body)[1])["outputs"][0]
        return torch.tensor(out["data"], dtype=torch.float32).reshape(out["shape"])

    def infer_grpc(self, model, x):
        import tritonclient.grpc as grpcclient  # carried as wheels to the GPU machine

        client = grpcclient.InferenceServerClient(self.grpc)
        meta = client.get_model_metadata(model)
        inp = grpcclient.InferInput(meta.inputs[0].name, list(x.shape), "FP32")
        inp.set_data_from_numpy(x.numpy())
        out = client.infer(model, [inp]).as_numpy(meta.outputs[0].name)
        client.close()
        return torch.from_numpy(out.copy())

    def metrics(self):
        return http(self.base + "/metrics")[1].decode()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def metric(text, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def rel_error(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def correctness(models, device):
    torch.manual_seed(0)
    rows = {"mlp": torch.randn(64, 1024), "digits": torch.rand(64, 64) * 16}
    servers = {device: Server(models, device)}
    if device != "cpu":
        servers["cpu"] = Server(models, "cpu")
    results, ok = [], True
    try:
        for model, x in rows.items():
            ref = torch.jit.load(os.path.join(models, model, "1", "model.pt"), map_location="cpu")
            with torch.no_grad():
                want = ref(x)
            got = {d: torch.cat([s.infer(model, x[i:i + 16]) for i in range(0, len(x), 16)])
                   for d, s in servers.items()}
            checks = [(f"server {device} vs in-process cpu", rel_error(got[device], want))]
            if device != "cpu":
                checks.append((f"server {device} vs server cpu", rel_error(got[device], got["cpu"])))
            try:
                grpc_got = torch.cat([servers[device].infer_grpc(model, x[i:i + 16]) for i in range(0, len(x), 16)])
                checks.append((f"server {device} gRPC vs in-process cpu", rel_error(grpc_got, want)))
            except ImportError as e:
                log(f"  {model:<7} gRPC check impossible: {e} (scripts/gpu-check.sh run installs the staged wheels)")
                checks.append((f"server {device} gRPC (tritonclient missing)", float("inf")))
            for what, err in checks:
                passed = err < TOLERANCE
                ok &= passed
                results.append({"model": model, "check": what, "max_rel_error": err, "pass": passed})
                log(f"  {model:<7} {what:<32} max rel error {err:.2e}  {'ok' if passed else 'FAIL'}")
    finally:
        for s in servers.values():
            s.stop()
    return ok, results


def in_process(path, device, batch, seconds):
    """Rows/s of torch on `device` at `batch`, host tensors in and out (as the server does)."""
    model = torch.jit.load(path, map_location=device).eval()
    x = torch.randn(batch, 1024)
    if device != "cpu":
        x = x.pin_memory()
    with torch.no_grad():
        for _ in range(5):
            model(x.to(device)).cpu()
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model(x.to(device, non_blocking=True)).cpu()
            n += 1
        elapsed = time.perf_counter() - start
    return n * batch / elapsed


def loadtest(base, concurrency, seconds, out):
    path = os.path.join(out, f"load-{concurrency}.json")
    cmd = [os.path.join(STAGE, "bin", "loadtest"), "--url", base, "--model", "mlp", "--concurrency",
           str(concurrency), "--duration", f"{seconds}s", "--api", "v2-binary", "--json", path]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(path) as f:
        return json.load(f)["summary"]


def throughput(models, device, seconds, out):
    concurrencies = [1, 32, 128] if device != "cpu" else [1, 8]
    model_path = os.path.join(models, "mlp", "1", "model.pt")
    points = []
    for batching in (True, False):
        server = Server(models, device, ["--dynamic-batching", str(batching).lower()])
        try:
            for c in concurrencies:
                before = server.metrics()
                s = loadtest(server.base, c, seconds, out)
                after = server.metrics()
                d_sum = metric(after, "torchship_batch_size_sum", model="mlp") - metric(before, "torchship_batch_size_sum", model="mlp")
                d_count = metric(after, "torchship_batch_size_count", model="mlp") - metric(before, "torchship_batch_size_count", model="mlp")
                mean_batch = d_sum / d_count if d_count else 0.0
                lat = s["latency_ms"]["corrected"]
                points.append({"batching": batching, "concurrency": c, "rps": s["achieved_rps"],
                               "errors": s["requests"] - s["ok"], "p50_ms": lat["p50"], "p99_ms": lat["p99"],
                               "mean_batch": mean_batch})
                log(f"  batching {'on ' if batching else 'off'} c={c:<4} {s['achieved_rps']:9.1f} req/s  "
                    f"p50 {lat['p50']:7.2f} ms  p99 {lat['p99']:7.2f} ms  mean batch {mean_batch:6.1f}")
            memory = {k: metric(server.metrics(), "torchship_cuda_memory_bytes", kind=k) for k in ("used", "total")}
        finally:
            server.stop()
    # In-process at the fixed batches and at each observed mean batch, right after the load.
    batches = sorted({1, 32, 128} | {max(1, round(p["mean_batch"])) for p in points})
    ceiling = {}
    for b in batches:
        ceiling[b] = in_process(model_path, device, b, min(seconds, 5))
        log(f"  in-process {device} batch {b:<4} {ceiling[b]:10.1f} rows/s")
    for p in points:
        b = max(1, round(p["mean_batch"]))
        p["in_process_rows_per_s"] = ceiling[b]
        p["ratio"] = p["rps"] / ceiling[b]
    return points, ceiling, memory


def environment(device):
    env = {"date": datetime.date.today().isoformat(), "torch": torch.__version__, "device": device}
    if device != "cpu" and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        if shutil.which("nvidia-smi"):
            q = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True)
            env["driver"] = q.stdout.strip()
        env["cuda_runtime"] = torch.version.cuda
    return env


def markdown(env, checks, points, ceiling, memory):
    lines = [f"GPU check, {env['date']}: {env.get('gpu', env['device'])}, driver {env.get('driver', '-')}, "
             f"torch {env['torch']} (libtorch for the tch-0.24 server build)", "",
             "| model | check | max rel error | |", "|---|---|---|---|"]
    lines += [f"| {c['model']} | {c['check']} | {c['max_rel_error']:.2e} | {'ok' if c['pass'] else 'FAIL'} |" for c in checks]
    lines += ["", "| batching | concurrency | server req/s | p50 ms | p99 ms | mean batch | in-process rows/s at that batch | server / in-process |",
              "|---|---|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {'on' if p['batching'] else 'off'} | {p['concurrency']} | {p['rps']:.1f} | {p['p50_ms']:.2f} | "
                     f"{p['p99_ms']:.2f} | {p['mean_batch']:.1f} | {p['in_process_rows_per_s']:.1f} | {p['ratio']:.2f} |")
    lines += ["", "| in-process batch | rows/s |", "|---|---|"]
    lines += [f"| {b} | {r:.1f} |" for b, r in sorted(ceiling.items())]
    if memory.get("total"):
        lines += ["", f"CUDA memory from /metrics: {memory['used'] / 2**30:.2f} GiB used of {memory['total'] / 2**30:.2f} GiB"]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a rehearsal)")
    parser.add_argument("--seconds", type=int, default=10, help="length of each load point")
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "gpu-check", "out"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.device != "cpu" and not torch.cuda.is_available():
        raise SystemExit("torch sees no CUDA device here")
    env = environment(args.device)
    log(f"gpu-check: {env}")

    models = os.path.join(args.out, "models")
    shutil.rmtree(models, ignore_errors=True)
    shutil.copytree(os.path.join(STAGE, "models"), models)
    shutil.copytree(os.path.join(ROOT, "models", "mlp"), os.path.join(models, "mlp"),
                    ignore=shutil.ignore_patterns("[0-9]*"))
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "export_models.py"), "--models", "mlp", "--formats", "torchscript",
                    "--out", models], check=True)

    log("correctness:")
    ok, checks = correctness(models, args.device)
    log("throughput (mlp, closed loop, binary tensors):")
    points, ceiling, memory = throughput(models, args.device, args.seconds, args.out)
    report = markdown(env, checks, points, ceiling, memory)
    log("\n" + report)
    with open(os.path.join(args.out, "gpu-check.md"), "w") as f:
        f.write(report)
    with open(os.path.join(args.out, "gpu-check.json"), "w") as f:
        json.dump({"environment": env, "correctness": checks, "throughput": points,
                   "in_process": ceiling, "cuda_memory_bytes": memory}, f, indent=2)
    shutil.rmtree(models, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
