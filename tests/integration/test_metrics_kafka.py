#!/usr/bin/python3
"""The metrics the engine reports, end to end with real services: a real kappa-jobmanager and
taskmanager run the seed job (hourly_clicks, p=2) from a 4-partition Kafka topic filled by
kappa-gen into an OpenSearch index (with-services starts both). Checked through REST and
/metrics: every partition shows its offset, end offset (the topic's size per partition, summed
to what kappa-gen wrote), lag (0 once read to the end) and carried watermark; the Elasticsearch
sink its acknowledged documents, bulks and latency; every vertex its backpressured / idle / busy
ratios (summing to 1); the taskmanager its RSS and CPU; bytes in and out; /metrics passes
`promtool check metrics`; in headless Chromium the job page's Kafka lag chart has a line with
data per partition, the Elasticsearch panel shows, every vertex has a backpressure colour and
the taskmanager page its RSS (screenshots in $DASHBOARD_OUT). It prints the size of the Metrics frames' connector JSON (the
per-heartbeat cost). Every process started is stopped.

Usage (meson sets the environment, with-services adds KAPPA_BROKERS and KAPPA_ES_URL):
KAPPA_JOBMANAGER=... KAPPA_TM=... KAPPA_CLI=... KAPPA_GEN=... KAPPA_JOBS=... KAPPA_SRC=...
"""
import json
import os
import subprocess
import tempfile
import urllib.request

import test_dashboard as td

ENV = os.environ
COUNT = 20000


def subtasks(base, jid):
    """Every subtask's metrics of every vertex: [(vid, subtask, metrics)]."""
    out = []
    for n in td.rest(base, f"/jobs/{jid}/plan")[1]["plan"]["nodes"]:
        for s in td.rest(base, f"/jobs/{jid}/vertices/{n['id']}")[1]["subtasks"]:
            out.append((n["id"], s["subtask"], s["metrics"]))
    return out


def partitions(base, jid):
    """{partition: entry of the source's reader stats} over the source subtasks."""
    parts = {}
    for _, _, m in subtasks(base, jid):
        for p in (((m or {}).get("source") or {}).get("reader") or {}).get("partitions", []):
            parts[p["partition"]] = p
    return parts


def main():
    topic = f"metrics-{os.getpid()}"
    index = f"metrics-{os.getpid()}"
    brokers, es = ENV["KAPPA_BROKERS"], ENV["KAPPA_ES_URL"]
    with td.workdir("kappa-metrics-") as work:
        subprocess.run([f"{ENV['KAPPA_SRC']}/deploy/dev/kafka", "topic-create", topic, "4"],
                       check=True, env=dict(ENV), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        subprocess.run([ENV["KAPPA_GEN"], "--brokers", brokers, "--topic", topic, "--partitions",
                        "4", "--count", str(COUNT), "--seed", "7", "--quiet"], check=True)
        base = td.cluster(work)
        subprocess.run([ENV["KAPPA_CLI"], "submit", f"{ENV['KAPPA_JOBS']}/hourly_clicks.so",
                        "--jobmanager", base, "-p", "2", "--name", "metrics", "--brokers",
                        brokers, "--es-url", es, "--from-earliest", "--source",
                        f"clicks=kafka:{topic}", "--sink", f"hourly-click-index=es:{index}",
                        "--json"], check=True, stdout=subprocess.DEVNULL)
        jid = td.rest(base, "/jobs")[1]["jobs"][0]["jid"]
        td.wait_for("RUNNING", lambda: td.rest(base, f"/jobs/{jid}")[1]["state"] == "RUNNING",
                    timeout=60)

        # the partitions: read to the end, so lag 0 and offsets summing to the topic's size
        def read_all():
            p = partitions(base, jid)
            return len(p) == 4 and all(e["lag"] == 0 for e in p.values()) and \
                sum(e["offset"] for e in p.values()) == COUNT and p
        parts = td.wait_for("every partition read to its end offset", read_all, timeout=120,
                            every=1)
        if sum(e["high"] for e in parts.values()) != COUNT:
            td.fail(f"end offsets {parts} do not sum to {COUNT}")
        print(f"ok partitions: {sorted((k, v['offset'], v['high'], v['lag']) for k, v in parts.items())}")
        wms = [w for _, _, m in subtasks(base, jid)
               for w in (((m or {}).get("source") or {}).get("watermarks") or [])]
        if sorted({w["partition"] for w in wms}) != [0, 1, 2, 3] or \
                not all(w["watermark"] > 0 for w in wms):
            td.fail(f"carried watermarks per partition: {wms}")

        # the Elasticsearch sink: its documents acknowledged
        def sink_stats():
            st = [m["sink"] for _, _, m in subtasks(base, jid) if m and m.get("sink")]
            return st and sum(s["acked"] for s in st) > 0 and st
        sinks = td.wait_for("the Elasticsearch sink's acknowledged documents", sink_stats,
                            timeout=120, every=1)
        if not all(s["bulks"] > 0 and s["bulk_latency_ms_p99"] > 0 for s in sinks if s["acked"]):
            td.fail(f"sink stats without bulks or latency: {sinks}")
        print(f"ok sink: {sinks}")

        # ratios, bytes, taskmanager process
        for vid, sub, m in subtasks(base, jid):
            r = [m["backpressured-ratio"], m["idle-ratio"], m["busy-ratio"]]
            if None in r or abs(sum(r) - 1) > 1e-6 or min(r) < 0:
                td.fail(f"vertex {vid} subtask {sub}: ratios {r}")
        # read to the end, the sources wait in their polls: mostly idle, not busy
        td.wait_for("idle sources", lambda: all(
            m["idle-ratio"] is not None and m["idle-ratio"] > 0.5
            for _, _, m in subtasks(base, jid) if m.get("source")), timeout=30, every=1)
        for n in td.rest(base, f"/jobs/{jid}/plan")[1]["plan"]["nodes"]:
            bp = td.rest(base, f"/jobs/{jid}/vertices/{n['id']}/backpressure")[1]
            if bp["status"] != "ok" or bp["backpressure-level"] not in ("ok", "low", "high"):
                td.fail(f"vertex {n['id']} backpressure: {bp}")
        # the window subtasks hold state (their open hours), the sources none
        td.wait_for("state sizes", lambda: any(
            m["state-size"] > 0 for _, _, m in subtasks(base, jid) if not m.get("source")),
            timeout=30, every=1)
        if any(m["state-size"] != 0 for _, _, m in subtasks(base, jid) if m.get("source")):
            td.fail("a source subtask reports keyed state")
        src = [m for vid, _, m in subtasks(base, jid) if m.get("source")]
        if not all(isinstance(m["source"].get("decode_errors"), int) and
                   isinstance(m["source"].get("dead_lettered"), int) for m in src):
            td.fail(f"sources without their malformed/dead-lettered counts: {src}")
        if sum(m["read-bytes"] for m in src) <= 0 or \
                not all(m["write-bytes"] > 0 for m in src):
            td.fail(f"source bytes in/out: {src}")
        tm = td.rest(base, "/taskmanagers")[1]["taskmanagers"][0]["id"]
        tmj = td.rest(base, f"/taskmanagers/{tm}")[1]
        if not (tmj["rss-bytes"] or 0) > 1 << 20 or tmj["cpu-seconds"] is None:
            td.fail(f"taskmanager RSS/CPU: {tmj}")

        # /metrics: the series, and valid for promtool
        with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
            prom = r.read().decode()
        for want in ('kappa_source_partition_lag{', 'partition="3"} 0\n',
                     "kappa_source_partition_end_offset{", "kappa_es_sink_documents_total{",
                     "kappa_subtask_busy_ratio{", "kappa_taskmanager_resident_memory_bytes{",
                     "kappa_source_decode_errors_total{", "kappa_source_dead_lettered_total{",
                     "kappa_subtask_state_bytes{"):
            if want not in prom:
                td.fail(f"/metrics has no {want!r}")
        with tempfile.NamedTemporaryFile("w", suffix=".prom") as f:
            f.write(prom)
            f.flush()
            chk = subprocess.run(["promtool", "check", "metrics"], stdin=open(f.name),
                                 capture_output=True, text=True)
            if chk.returncode != 0:
                td.fail(f"promtool: {chk.stdout}{chk.stderr}")

        # the per-heartbeat cost: the connector JSON each Metrics frame carries
        for vid, sub, m in subtasks(base, jid):
            s = json.dumps(m.get("source"), separators=(",", ":")) if m.get("source") else ""
            k = json.dumps(m.get("sink"), separators=(",", ":")) if m.get("sink") else ""
            print(f"cost vertex {vid} subtask {sub}: source_json {len(s)} B, sink_json {len(k)} B")

        # the dashboard: the lag chart has a line per partition with data, the Elasticsearch
        # panel shows, every vertex has a backpressure colour, the taskmanager its RSS
        os.makedirs(td.OUT, exist_ok=True)
        b = td.Browser(work)
        b.open(f"{base}/?refresh=500#/job/{jid}")
        b.wait_js("a lag line with data for every partition",
                  "[...document.querySelectorAll('#lagchart polyline')].filter("
                  "(l) => l.getAttribute('points').split(' ').length >= 3).length === 4", 30)
        b.wait_js("the Elasticsearch sink panel", "/Documents\\/s/.test("
                  "document.querySelector('#essink') && document.querySelector('#essink').textContent)")
        b.wait_js("the partitions table", "document.querySelectorAll('#partitions tr').length === 5")
        colours = b.wait_js("a backpressure colour on every vertex",
                            "(() => { const r = [...document.querySelectorAll('#dag .vx rect')]"
                            ".map((e) => e.getAttribute('class')); return r.length && "
                            "r.every((c) => c !== 'bp-na') && r.join(' '); })()")
        print(f"ok dashboard: lag chart, Elasticsearch panel, vertex colours {colours}")
        b.check_clean("job page over Kafka")
        b.shot("job-kafka")
        b.open(f"{base}/#/taskmanagers")
        b.wait_js("RSS in the taskmanagers table", "/MiB/.test(document.querySelector('#tms') && "
                  "document.querySelector('#tms').textContent)")
        b.check_clean("taskmanagers page")
        b.open(f"{base}/#/tm/{tm}")
        b.wait_js("the taskmanager's RSS", "/MiB/.test(document.querySelector('#tmrss') && "
                  "document.querySelector('#tmrss').textContent)")
        b.check_clean("taskmanager page")
        b.shot("taskmanager")
        print("ok: partitions, carried watermarks, Elasticsearch sink, ratios, bytes, "
              "taskmanager RSS/CPU, /metrics and the dashboard")


if __name__ == "__main__":
    td.run(main)
