#!/usr/bin/python3
"""GET /jobs/:id/results and the dashboard's Results tab against a real OpenSearch (started by
with-services, KAPPA_ES_URL): an index holding known hourly click counts of three items, a job
submitted with that index as its es: sink (no taskmanager: the route reads only the manifest),
and the route must answer the exact top items, totals and hourly sums; ?top= and the field
arguments are honoured and a bad field name falls back to the default; a job with no es: sink
gets a 404 with the reason, an unreachable Elasticsearch a 502. Then headless Chromium shows
the Results tab with the chart and the table, with no console error. Every process started is
stopped and the index deleted.
"""
import json
import os
import subprocess
import urllib.request

import test_dashboard as td

ENV = os.environ
H = 3600000
T0 = 1700000000000 - 1700000000000 % H
DOCS = [("item_a", 0, 5), ("item_a", 1, 7), ("item_a", 2, 9), ("item_b", 1, 2), ("item_b", 2, 2),
        ("item_c", 2, 1)]


def es(method, path, body=None, ndjson=False):
    data = None
    if body is not None:
        data = body.encode() if ndjson else json.dumps(body).encode()
    req = urllib.request.Request(ENV["KAPPA_ES_URL"] + path, data=data, method=method,
                                 headers={"Content-Type": "application/x-ndjson" if ndjson
                                          else "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def submit(base, name, sink, extra=()):
    subprocess.run([ENV["KAPPA_CLI"], "submit", f"{ENV['KAPPA_JOBS']}/hourly_clicks.so",
                    "--jobmanager", base, "--name", name, "--source", "clicks=file:/dev/null",
                    "--sink", f"hourly-click-index={sink}", *extra, "--json"], check=True,
                   stdout=subprocess.DEVNULL)


def main():
    index = f"kappa-results-test-{os.getpid()}"
    lines = ""
    for item, hour, count in DOCS:
        end = T0 + (hour + 1) * H
        lines += json.dumps({"index": {"_index": f"{index}-v1", "_id": f"{item}|{end}"}}) + "\n"
        lines += json.dumps({"item_id": item, "click_count": count, "window_start": end - H,
                             "window_end": end}) + "\n"
    r = es("POST", "/_bulk?refresh=true", lines, ndjson=True)
    if r.get("errors"):
        td.fail(f"bulk: {r}")
    # behind an alias, as the jobmanager's blue/green keeps every es: sink (a concrete index
    # would be migrated behind one at submit, failing searches for a moment)
    es("POST", "/_aliases", {"actions": [{"add": {"index": f"{index}-v1", "alias": index}}]})
    try:
        with td.workdir("kappa-results-") as work:
            check(work, index)
    finally:
        es("DELETE", f"/{index}-v1")


def check(work, index):
    """The route's answers for three jobs, then the Results tab in Chromium."""
    _, ports = td.start_jobmanager(work)
    base = "http://" + ports["rest"]
    submit(base, "clicks", f"es:{index}", ("--es-url", ENV["KAPPA_ES_URL"]))
    submit(base, "tofile", f"file:{work}/out")
    jid = next(j["jid"] for j in td.rest(base, "/jobs")[1]["jobs"] if j["name"] == "clicks")
    submit(base, "nodb", f"es:{index}-nodb", ("--es-url", "http://127.0.0.1:1"))

    status, d = td.rest(base, "/jobs/clicks/results")
    got = [(i["key"], i["total"], i["hourly"]) for i in d["items"]]
    want = [("item_a", 21, [[T0 + H, 5], [T0 + 2 * H, 7], [T0 + 3 * H, 9]]),
            ("item_b", 4, [[T0 + 2 * H, 2], [T0 + 3 * H, 2]]), ("item_c", 1, [[T0 + 3 * H, 1]])]
    if got != want or d["documents"] != 6 or d["index"] != index or d["latest"] != T0 + 3 * H:
        td.fail(f"results: {json.dumps(d)}, expected items {want}")
    status, d = td.rest(base, "/jobs/clicks/results?top=1&hours=1")
    if status != 200 or [i["key"] for i in d["items"]] != ["item_a"] or d["documents"] != 3:
        td.fail(f"?top=1&hours=1: {status} {d}")
    status, d = td.rest(base, "/jobs/clicks/results?key=item_id;x&value=click_count")
    if status != 200 or d["key"] != "item_id" or len(d["items"]) != 3:
        td.fail(f"a bad key name: {status} {d}")
    status, d = td.rest(base, "/jobs/tofile/results")
    if status != 404 or "no Elasticsearch index" not in d["errors"][0]:
        td.fail(f"a file sink: {status} {d}")
    status, d = td.rest(base, "/jobs/nodb/results")
    if status != 502:
        td.fail(f"an unreachable Elasticsearch: {status} {d}")
    print("ok: the route answers the index's top items and hourly sums")

    status, d = td.rest(base, f"/jobs/{jid}/results")
    if status != 200:
        td.fail(f"results by the job's id: {status} {d}")
    b = td.Browser(work)
    b.open(f"{base}/#/job/{jid}/results")
    b.wait_js("the results table", "!!document.querySelector('#results') && "
              "document.querySelector('#results').textContent.includes('item_a')")
    b.wait_js("the chart's lines", "document.querySelectorAll('svg.chart polyline').length == 3")
    b.check_clean("results")
    b.shot("job-results")
    print("ok: the Results tab shows them")


if __name__ == "__main__":
    td.run(main)
