#!/usr/bin/python3
"""docs/openapi.yaml against the real thing: a real kappa-jobmanager and taskmanager running the
seed job (hourly_clicks, p=2) over a FIFO fed slowly, so every subtask has reported. Every GET
route of the document is called (each vertex of the plan, the job by id and by name, the
taskmanager, the query variants), and every answer must have a status the document lists, that
status's content type, and a body valid under its schema (JSON Schema 2020-12, python3-jsonschema).
Then the error answers (unknown job, vertex and taskmanager; a malformed vertex id) and the
cancel (202, then 409) are checked against the Error schema. Every process started is stopped.
POST /jobs is not called here (the CLI's submission is tested in test_cli_jobmanager).

Usage: the environment of test_dashboard.py plus KAPPA_SRC (the source tree, for the document).
"""
import json
import os
import subprocess
import urllib.request

import jsonschema  # Debian: python3-jsonschema
import yaml  # Debian: python3-yaml

import test_dashboard as td

ENV = os.environ


def call(base, method, path):
    req = urllib.request.Request(base + path, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


class Checker:
    def __init__(self, spec):
        self.spec = spec
        self.resolver = jsonschema.RefResolver.from_schema(spec)
        self.called = set()

    def check(self, base, template, path, method="get"):
        op = self.spec["paths"][template][method]
        status, ctype, body = call(base, method.upper(), path)
        resp = op["responses"].get(str(status))
        if resp is None:
            td.fail(f"{method.upper()} {path}: status {status} is not in the document "
                    f"({list(op['responses'])}): {body[:300]!r}")
        if "$ref" in resp:
            resp = self.resolver.resolve(resp["$ref"])[1]
        content = resp.get("content")
        if content:
            media = next((m for m in content if ctype.startswith(m)), None)
            if media is None:
                td.fail(f"{method.upper()} {path}: content type {ctype} not in {list(content)}")
            schema = content[media].get("schema")
            if schema and media == "application/json":
                doc = json.loads(body)
                try:
                    jsonschema.Draft202012Validator(schema, resolver=self.resolver).validate(doc)
                except jsonschema.ValidationError as e:
                    td.fail(f"{method.upper()} {path}: {e.message} at {list(e.absolute_path)} "
                            f"(schema {list(e.absolute_schema_path)})")
        self.called.add((template, method))
        print(f"ok {status} {method.upper()} {path}")
        return status, body


def main():
    spec = yaml.safe_load(open(os.path.join(ENV["KAPPA_SRC"], "docs", "openapi.yaml")))
    with td.workdir("kappa-openapi-") as work:
        base = td.cluster(work)
        subprocess.run([ENV["KAPPA_GEN"], "--output", f"{work}/events.ndjson", "--count",
                        "100000", "--seed", "5"], check=True, stderr=subprocess.DEVNULL)
        fifo = f"{work}/events.fifo"
        os.mkfifo(fifo)
        feeder = td.Feeder(fifo, open(f"{work}/events.ndjson").readlines(), 4000)
        feeder.start()
        subprocess.run([ENV["KAPPA_CLI"], "submit", f"{ENV['KAPPA_JOBS']}/hourly_clicks.so",
                        "--jobmanager", base, "-p", "2", "--name", "clicks", "--source",
                        f"clicks=file:{fifo}", "--sink", f"hourly-click-index=file:{work}/out",
                        "--checkpoint-interval", "1s", "--checkpoint-dir", f"{work}/checkpoints",
                        "--json"], check=True,
                       stdout=subprocess.DEVNULL)
        jid = td.rest(base, "/jobs")[1]["jobs"][0]["jid"]
        td.wait_for("RUNNING", lambda: td.rest(base, f"/jobs/{jid}")[1]["state"] == "RUNNING")
        td.wait_for("every subtask's first Metrics", lambda: all(
            s["metrics"] for t in td.rest(base, f"/jobs/{jid}")[1]["tasks"]
            for s in t["subtasks"]))
        vids = [n["id"] for n in td.rest(base, f"/jobs/{jid}/plan")[1]["plan"]["nodes"]]
        tm = td.rest(base, "/taskmanagers")[1]["taskmanagers"][0]["id"]

        c = Checker(spec)
        for template, item in spec["paths"].items():
            if "get" not in item:
                continue
            for job in (jid, "clicks"):
                for vid in vids if "{vid}" in template else [None]:
                    path = template.replace("{id}", job).replace("{tmid}", tm)
                    if vid is not None:
                        path = path.replace("{vid}", str(vid))
                    c.check(base, template, path)
                    if template.endswith("/subtasks/metrics"):
                        c.check(base, template, path + "?get=numRecordsIn,numRecordsOut,"
                                "currentInputWatermark")
                    if template == "/jobs/{id}/exceptions":
                        c.check(base, template, path + "?maxExceptions=5")
                    if template == "/jobmanager/logs":
                        c.check(base, template, path + "?lines=20")
                if "{id}" not in template:
                    break
        for template, path, want in (("/jobs/{id}", "/jobs/nosuchjob", 404),
                                     ("/jobs/{id}/plan", "/jobs/nosuchjob/plan", 404),
                                     ("/jobs/{id}/vertices/{vid}", f"/jobs/{jid}/vertices/999", 404),
                                     ("/jobs/{id}/vertices/{vid}", f"/jobs/{jid}/vertices/x", 400),
                                     ("/taskmanagers/{tmid}", "/taskmanagers/nosuch", 404)):
            status, _ = c.check(base, template, path)
            if status != want:
                td.fail(f"GET {path}: {status}, expected {want}")
        status, _ = c.check(base, "/jobs/{id}", f"/jobs/{jid}?mode=cancel", "patch")
        if status != 202:
            td.fail(f"cancel: {status}")
        td.wait_for("CANCELED", lambda: td.rest(base, f"/jobs/{jid}")[1]["state"] == "CANCELED")
        status, _ = c.check(base, "/jobs/{id}", f"/jobs/{jid}?mode=cancel", "patch")
        if status != 409:
            td.fail(f"second cancel: {status}, expected 409")
        feeder.stop.set()
        missing = [(p, m) for p, item in spec["paths"].items() for m in item
                   if m in ("get", "patch") and (p, m) not in c.called]
        if missing:
            td.fail(f"operations of the document never called: {missing}")
        print(f"ok: {len(c.called)} operations of docs/openapi.yaml match the real answers")


if __name__ == "__main__":
    td.run(main)
