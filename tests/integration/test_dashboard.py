#!/usr/bin/python3
"""The dashboard in a real headless Chromium (Debian's `chromium`), driven through the DevTools
protocol (python3-websocket), against a real kappa-jobmanager + kappa-taskmanager running the
seed job (hourly_clicks, p=1, a checkpoint every second) over a FIFO that this test feeds
slowly, so the job runs and its counters grow while the browser watches (p=1: at p=2 the two
file-source subtasks would share the FIFO's lines and drop each other's partitions). Checks:
every page loads with no console error, no uncaught exception and no failed request; the DAG
shows every operator of the plan; the records counters on the job page grow; the checkpoint
table grows; a savepoint clicked on the page writes its _metadata into the directory given at
the prompt; a cancel clicked on the page cancels the job (the jobmanager has a token: the page
asks for it once, on the 401). A screenshot of each page is saved in $DASHBOARD_OUT. Every
process started is stopped.

Usage (meson sets the environment): KAPPA_JOBMANAGER=... KAPPA_TM=... KAPPA_CLI=... KAPPA_GEN=...
KAPPA_JOBS=... DASHBOARD_OUT=DIR test_dashboard.py
"""
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import websocket  # Debian: python3-websocket

ENV = os.environ
OUT = ENV.get("DASHBOARD_OUT") or tempfile.gettempdir()
procs = []


def fail(msg):
    raise AssertionError(msg)


def start(args, log):
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True,
                         start_new_session=True)
    procs.append(p)
    return p


def stop_all():
    for p in reversed(procs):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def rest(base, path, method="GET"):
    req = urllib.request.Request(base + path, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_for(what, fn, timeout=30.0, every=0.2):
    end = time.time() + timeout
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(every)
    fail(f"timed out waiting for {what}")


class Feeder(threading.Thread):
    """Writes the events into the FIFO at about `rate` lines/s until stopped."""

    def __init__(self, fifo, lines, rate):
        super().__init__(daemon=True)
        self.fifo, self.lines, self.rate, self.stop = fifo, lines, rate, threading.Event()

    def run(self):
        try:
            with open(self.fifo, "w") as f:
                chunk = max(1, self.rate // 10)
                for i in range(0, len(self.lines), chunk):
                    if self.stop.is_set():
                        return
                    f.write("".join(self.lines[i:i + chunk]))
                    f.flush()
                    time.sleep(0.1)
        except (BrokenPipeError, OSError):
            pass  # the job was cancelled: its reader closed the FIFO


class Browser:
    """One headless Chromium page over the DevTools protocol; records every console error,
    uncaught exception and failed request."""

    def __init__(self, workdir):
        self.profile = os.path.join(workdir, "chrome")
        self.proc = start(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
                           "--no-first-run", "--disable-extensions", "--remote-debugging-port=0",
                           f"--user-data-dir={self.profile}", "about:blank"],
                          os.path.join(workdir, "chromium.log"))
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        port = wait_for("chromium's DevTools port", lambda: os.path.exists(port_file) and
                        open(port_file).read().split("\n")[0], timeout=60)
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30,
                                              suppress_origin=True)
        self.next_id, self.errors, self.failed = 0, [], []
        self.prompt_answer, self.dialogs = None, []
        for m in ("Runtime.enable", "Log.enable", "Page.enable", "Network.enable"):
            self.call(m)
        self.call("Emulation.setDeviceMetricsOverride", width=1440, height=900,
                  deviceScaleFactor=1, mobile=False)

    def _event(self, msg):
        m, p = msg.get("method"), msg.get("params", {})
        if m == "Page.javascriptDialogOpening":  # window.prompt: answered like a person would
            self.dialogs.append(p.get("message"))
            self.next_id += 1
            answer = self.prompt_answer  # a list: one answer per dialog, in order
            if isinstance(answer, list):
                answer = answer.pop(0) if answer else None
            self.ws.send(json.dumps({"id": self.next_id, "method": "Page.handleJavaScriptDialog",
                                     "params": {"accept": answer is not None,
                                                "promptText": answer or ""}}))
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.errors.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                      for a in p.get("args", [])))
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.errors.append("exception: " + str(d.get("exception", {}).get("description",
                                                                               d.get("text"))))
        elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
            e = p["entry"]
            self.errors.append(f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}")
        elif m == "Network.responseReceived" and p["response"]["status"] >= 400:
            self.failed.append(f"{p['response']['status']} {p['response']['url']}")

    def call(self, method, **params):
        self.next_id += 1
        my = self.next_id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my:
                if "error" in msg:
                    fail(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def pump(self, seconds):
        """Handles events for a while (the page polls meanwhile)."""
        end = time.time() + seconds
        self.ws.settimeout(0.2)
        while time.time() < end:
            try:
                self._event(json.loads(self.ws.recv()))
            except websocket.WebSocketTimeoutException:
                pass
        self.ws.settimeout(30)

    def js(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            fail(f"evaluating {expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def open(self, url):
        self.call("Page.navigate", url=url)

    def wait_js(self, what, expr, timeout=20.0):
        end = time.time() + timeout
        while time.time() < end:
            v = self.js(expr)
            if v:
                return v
            self.pump(0.25)
        fail(f"the page never showed {what} ({expr}); errors: {self.errors}")

    def shot(self, name):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path = os.path.join(OUT, name + ".png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        print(f"screenshot {path}")

    def check_clean(self, page):
        self.pump(0.5)
        if self.errors or self.failed:
            fail(f"{page}: console errors {self.errors}, failed requests {self.failed}")


def dump_logs(work):
    """What the daemons said, for a failure report."""
    for log in ("jm.log", "tm.log"):
        if os.path.exists(os.path.join(work, log)):
            tail = open(os.path.join(work, log), errors="replace").readlines()[-15:]
            print(f"--- {log} (last lines)\n{''.join(tail)}", file=sys.stderr)


def start_jobmanager(work, *extra):
    """A kappa-jobmanager on free ports, its log in work/jm.log: (process, {"rest", "rpc"})."""
    jm = start([ENV["KAPPA_JOBMANAGER"], "--state-dir", f"{work}/jm", "--rest-port", "0",
                "--rpc-port", "0", *extra], f"{work}/jm.log")
    ports = {}
    while len(ports) < 2:
        line = jm.stdout.readline()
        if not line:
            fail(f"the jobmanager exited (see {work}/jm.log)")
        kind, addr = line.split()
        ports[kind] = addr
    return jm, ports


def cluster(work, *jm_extra):
    """A jobmanager and one taskmanager with 2 slots; the REST base URL."""
    _, ports = start_jobmanager(work, "--heartbeat-interval-ms", "500", *jm_extra)
    base = "http://" + ports["rest"]
    start([ENV["KAPPA_TM"], "--jobmanager", ports["rpc"], "--slots", "2", "--state-dir",
           f"{work}/tm", "--slot-memory-mb", "64"], f"{work}/tm.log")
    wait_for("the taskmanager", lambda: len(rest(base, "/taskmanagers")[1]["taskmanagers"]) == 1)
    return base


@contextlib.contextmanager
def workdir(prefix):
    """A scratch directory for one test; on the way out every process started is stopped, the
    directory removed, and on a failure the daemons' log tails printed."""
    work = tempfile.mkdtemp(prefix=prefix)
    try:
        yield work
    except AssertionError:
        dump_logs(work)
        raise
    finally:
        stop_all()
        shutil.rmtree(work, ignore_errors=True)


def run(main):
    """Runs a test's main: exit 1 with the reason on a failed check."""
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)


def main():
    os.makedirs(OUT, exist_ok=True)
    with workdir("kappa-dash-") as work:
        token = "dashboard-test-token"
        with open(f"{work}/token", "w") as f:
            f.write(token + "\n")
        base = cluster(work, "--token-file", f"{work}/token")
        subprocess.run([ENV["KAPPA_GEN"], "--output", f"{work}/events.ndjson", "--count",
                        "400000", "--seed", "11"], check=True, stderr=subprocess.DEVNULL)
        fifo = f"{work}/events.fifo"
        os.mkfifo(fifo)
        feeder = Feeder(fifo, open(f"{work}/events.ndjson").readlines(), 4000)
        feeder.start()
        subprocess.run([ENV["KAPPA_CLI"], "submit", f"{ENV['KAPPA_JOBS']}/hourly_clicks.so",
                        "--jobmanager", base, "-p", "1", "--name", "clicks", "--source",
                        f"clicks=file:{fifo}", "--sink", f"hourly-click-index=file:{work}/out",
                        "--checkpoint-interval", "1s", "--checkpoint-dir", f"{work}/checkpoints",
                        "--token-file", f"{work}/token", "--json"], check=True,
                       stdout=subprocess.DEVNULL)
        jid = rest(base, "/jobs")[1]["jobs"][0]["jid"]
        wait_for("RUNNING", lambda: rest(base, f"/jobs/{jid}")[1]["state"] == "RUNNING")
        operators = [n["operator"] for n in rest(base, f"/jobs/{jid}/plan")[1]["plan"]["nodes"]]

        b = Browser(work)
        b.open(base + "/")
        b.wait_js("the job in the jobs table",
                  "!!document.querySelector('#jobs') && "
                  "document.querySelector('#jobs').textContent.includes('clicks')")
        b.check_clean("overview")
        b.shot("overview")

        b.open(f"{base}/#/job/{jid}")
        for op in operators:
            b.wait_js(f"operator {op} in the DAG",
                      f"!!document.querySelector('#dag') && "
                      f"document.querySelector('#dag').textContent.includes({json.dumps(op)})")
        count = ("Array.from(document.querySelectorAll('#subtasks tr td:nth-child(4)'))"
                 ".reduce((a, td) => a + (parseInt(td.textContent.replace(/,/g, '')) || 0), 0)")
        first = b.wait_js("records counted on the job page", count)
        b.pump(4.5)
        second = b.js(count)
        if not second > first:
            fail(f"the records counter did not grow on the page: {first} then {second}")
        print(f"job page: records in of the selected vertex {first} -> {second}")
        b.wait_js("a rate in the DAG", "/in [0-9][0-9.,]*\\/s/.test("
                  "document.querySelector('#dag').textContent)")
        b.check_clean("job graph")
        b.shot("job-graph")
        for tab, sel in (("exceptions", "#exceptions"), ("checkpoints", "#checkpoints"),
                         ("config", "#jobconfig")):
            b.open(f"{base}/#/job/{jid}/{tab}")
            b.wait_js(f"the {tab} tab", f"!!document.querySelector('{sel}')")
            if tab == "checkpoints":  # one a second: the table grows while we watch
                rows = "document.querySelectorAll('#checkpoints tr').length"
                first = b.wait_js("a completed checkpoint", f"document.querySelector("
                                  f"'#checkpoints').textContent.includes('COMPLETED') && {rows}")
                b.pump(3.5)
                if not b.js(rows) > first:
                    fail(f"the checkpoint table did not grow: {first} rows, then {b.js(rows)}")
                print(f"checkpoints tab: {first - 1} then {b.js(rows) - 1} checkpoints")
                b.wait_js("the newest checkpoint's subtasks",
                          "document.querySelectorAll('#ckpt-detail tr').length > 1")
                cid = b.js("(r => (r.click(), r.dataset.ckpt))("
                           "document.querySelectorAll('#checkpoints tr[data-ckpt]')[1])")
                b.wait_js(f"checkpoint {cid}'s subtasks on a click", "!!document.querySelector("
                          "'#ckpt-detail') && document.body.textContent.includes("
                          f"'Checkpoint {cid} per subtask')")
            b.check_clean(f"job {tab}")
            b.shot(f"job-{tab}")
        b.open(f"{base}/#/taskmanagers")
        b.wait_js("the taskmanager row", "document.querySelectorAll('tr.link').length == 1")
        b.check_clean("taskmanagers")
        b.shot("taskmanagers")
        b.js("document.querySelector('tr.link').click()")
        b.wait_js("the taskmanager page", "document.body.textContent.includes('Heartbeat age')")
        b.wait_js("the taskmanager's log", "!!document.querySelector('#tmlog') && "
                  "document.querySelector('#tmlog').textContent.includes('registered with')")
        b.check_clean("taskmanager")
        b.shot("taskmanager")
        b.open(f"{base}/#/jobmanager")
        b.wait_js("the jobmanager log", "!!document.querySelector('#jmlog') && "
                  "document.querySelector('#jmlog').textContent.includes('RUNNING')")
        b.check_clean("jobmanager")
        b.shot("jobmanager")

        # a savepoint from the page: it asks for the directory, then (401) for the token
        b.open(f"{base}/#/job/{jid}")
        b.wait_js("the savepoint button", "!!document.querySelector('#savepoint') && "
                  "!document.querySelector('#savepoint').disabled")
        b.prompt_answer = [f"{work}/savepoint", token]
        b.js("document.querySelector('#savepoint').click()")
        wait_for("the savepoint's _metadata", lambda: b.pump(0.3) or
                 os.path.exists(f"{work}/savepoint/_metadata"))
        if len(b.dialogs) != 2 or "directory" not in b.dialogs[0] or "token" not in b.dialogs[1]:
            fail(f"the savepoint should have asked for a directory, then the token: {b.dialogs}")
        b.js("sessionStorage.removeItem('kappa-token')")  # the cancel below asks again
        b.dialogs = []
        b.failed = [f for f in b.failed if not f.startswith("401 ")]
        b.errors = [e for e in b.errors if "401" not in e]
        b.check_clean("after the savepoint")

        b.open(f"{base}/#/job/{jid}")
        b.wait_js("the cancel button", "!!document.querySelector('#cancel')")
        b.js("document.querySelector('#cancel').click()")
        b.wait_js("the confirmation", "document.querySelector('#cancel').textContent"
                  ".includes('Confirm')")
        b.prompt_answer = token  # the jobmanager has a token: the page asks for it on the 401
        b.js("document.querySelector('#cancel').click()")
        wait_for("CANCELED", lambda: b.pump(0.3) or  # the page's prompt is answered meanwhile
                 rest(base, f"/jobs/{jid}")[1]["state"] == "CANCELED")
        b.wait_js("CANCELED on the page", "document.querySelector('h1 .badge').textContent"
                  " == 'CANCELED'")
        if len(b.dialogs) != 1 or "token" not in b.dialogs[0]:
            fail(f"the page should have asked for the token once: {b.dialogs}")
        b.failed = [f for f in b.failed if not f.startswith("401 ")]  # the unauthorized try
        b.errors = [e for e in b.errors if "401" not in e]
        b.check_clean("after cancel")
        b.shot("job-cancelled")
        feeder.stop.set()
        print(f"ok: pages clean, DAG has {operators}, counters grew, savepoint and cancel worked; "
              f"screenshots in {OUT}")


if __name__ == "__main__":
    run(main)
