#!/usr/bin/python3
"""What the REST API and the dashboard cost the jobmanager (figures for docs/dashboard.md).
Prints figures, asserts nothing (STYLE.md rule 6).

Starts a real kappa-jobmanager and one kappa-taskmanager with --slots P running hourly_clicks at
-p P over a FIFO (2P subtasks: sources and windows; P=50 gives the 100 subtasks of issue 11),
so the jobmanager holds and serves 2P subtasks' Metrics (reported every 500 ms heartbeat), then:
  1. jobmanager CPU and RSS for --seconds with no client;
  2. the same with the dashboard open in headless Chromium on the job page at ?refresh=1000;
  3. REST latency under --clients concurrent keep-alive clients (threads of this process,
     sources spread over 127.0.0.2-5 because the jobmanager allows 32 connections per
     address), each looping over GET /overview, /jobs/overview, /jobs/:id, /jobs/:id/vertices/0,
     /metrics: p50, p99, max and requests/s. The clients share the machine's cores with the
     jobmanager and are Python: the figures are an upper bound of the server's latency.
  4. the size of the dashboard's assets (raw and gzip -9).
Usage: rest_bench.py BUILD_DIR [--parallelism 50] [--clients 50] [--seconds 20]
"""
import argparse
import gzip
import http.client
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
import test_dashboard as td  # noqa: E402  (its process and browser helpers)


def proc_usage(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return cpu, rss


def measure(pid, seconds, label, during=None):
    c0, _ = proc_usage(pid)
    t0 = time.time()
    peak = 0
    while time.time() - t0 < seconds:
        if during:
            during(1.0)
        else:
            time.sleep(1.0)
        peak = max(peak, proc_usage(pid)[1])
    c1, rss = proc_usage(pid)
    print(f"{label}: jobmanager CPU {100 * (c1 - c0) / (time.time() - t0):.2f} % of one core, "
          f"RSS {rss / 1024:.1f} MiB (peak {peak / 1024:.1f} MiB), load {os.getloadavg()[0]:.2f}")


def load_clients(host, port, paths, clients, seconds):
    lat, errors, stop = [], [0], time.time() + seconds
    lock = threading.Lock()

    def client(i):
        conn = http.client.HTTPConnection(host, port, timeout=10,
                                          source_address=(f"127.0.0.{2 + i % 4}", 0))
        mine, k = [], i
        while time.time() < stop:
            path = paths[k % len(paths)]
            k += 1
            t = time.perf_counter()
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    errors[0] += 1
            except (OSError, http.client.HTTPException):
                errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=10,
                                                  source_address=(f"127.0.0.{2 + i % 4}", 0))
                continue
            mine.append(time.perf_counter() - t)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000  # noqa: E731
    print(f"REST under {clients} concurrent clients for {seconds} s: {len(lat)} requests "
          f"({len(lat) / seconds:.0f}/s), {errors[0]} errors, p50 {q(0.50):.1f} ms, "
          f"p99 {q(0.99):.1f} ms, max {lat[-1] * 1000:.1f} ms, load {os.getloadavg()[0]:.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--parallelism", type=int, default=50)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=20)
    a = ap.parse_args()
    b = os.path.abspath(a.build)
    p = a.parallelism
    td.ENV["KAPPA_JOBMANAGER"] = f"{b}/jobmanager/kappa-jobmanager"
    with td.workdir("kappa-rest-bench-") as work:
        jm, ports = td.start_jobmanager(work, "--heartbeat-interval-ms", "500")
        base = "http://" + ports["rest"]
        td.start([f"{b}/taskmanager/kappa-taskmanager", "--jobmanager", ports["rpc"], "--slots",
                  str(p), "--state-dir", f"{work}/tm", "--slot-memory-mb", "160"],
                 f"{work}/tm.log")  # 160: the exchanges' share must hold 2 batches a channel
        td.wait_for("the taskmanager",
                    lambda: len(td.rest(base, "/taskmanagers")[1]["taskmanagers"]) == 1)
        fifo = f"{work}/events.fifo"
        os.mkfifo(fifo)
        hold = os.open(fifo, os.O_RDWR)  # a writer that never writes: the job idles, running
        td.subprocess.run([f"{b}/jobmanager/cli/kappa", "submit", f"{b}/jobs/hourly_clicks.so",
                           "--jobmanager", base, "-p", str(p), "--name", "bench", "--source",
                           f"clicks=file:{fifo}", "--sink", f"hourly-click-index=file:{work}/out",
                           "--checkpoint-interval", "10s", "--checkpoint-dir",
                           f"{work}/checkpoints", "--json"], check=True, stdout=td.subprocess.DEVNULL)
        jid = td.rest(base, "/jobs")[1]["jobs"][0]["jid"]
        td.wait_for("RUNNING", lambda: td.rest(base, f"/jobs/{jid}")[1]["state"] == "RUNNING",
                    timeout=120)
        nsub = sum(t["parallelism"] for t in td.rest(base, f"/jobs/{jid}")[1]["tasks"])
        print(f"job with {nsub} subtasks RUNNING on one taskmanager ({p} slots)")
        time.sleep(2)
        measure(jm.pid, a.seconds, "no client")
        br = td.Browser(work)
        br.open(f"{base}/?refresh=1000#/job/{jid}")
        br.wait_js("the DAG", "!!document.querySelector('#dag')")
        measure(jm.pid, a.seconds, "dashboard open on the job page at 1 s refresh", br.pump)
        br.proc.terminate()
        host, port = ports["rest"].split(":")
        paths = ["/overview", "/jobs/overview", f"/jobs/{jid}", f"/jobs/{jid}/vertices/0",
                 "/metrics"]
        load_clients(host, int(port), paths, a.clients, a.seconds)
        print(f"jobmanager after the load: RSS {proc_usage(jm.pid)[1] / 1024:.1f} MiB")
        os.close(hold)
    web = os.path.join(os.path.dirname(__file__), "..", "jobmanager", "web")
    files = [f for f in sorted(os.listdir(web)) if not f.endswith(".py")]
    raw = sum(os.path.getsize(os.path.join(web, f)) for f in files)
    gz = sum(len(gzip.compress(open(os.path.join(web, f), "rb").read(), 9)) for f in files)
    print(f"dashboard assets ({', '.join(files)}): {raw} bytes, {gz} bytes gzip -9 "
          f"(both embedded in the binary; the gzip'd copy goes to browsers)")


if __name__ == "__main__":
    main()
