#!/usr/bin/env python3
"""A reader of a kappa-managed alias during a blue/green reprocessing (test_bluegreen.c,
deploy/dev/seed): reads every document of ALIAS as one snapshot (a scroll) per round until a
round that began after STOPFILE appeared, and labels each answer: "v1" if it equals the v1
truth exactly, "v2" for the v2 truth, else "other" (a mixture, an empty or partial index, no
index). Writes one line per change of
label to OUT ("<label> <first poll> <polls>") and a last line "polls N". Truths are the sorted
"item<TAB>window_end<TAB>count" files the tests compare indices with.
Usage: alias_reader.py URL ALIAS V1_TRUTH V2_TRUTH OUT STOPFILE"""
import json
import os
import sys
import time
import urllib.error
import urllib.request


def load(path):
    with open(path) as f:
        return {tuple(l.rstrip("\n").split("\t")[:2]): l.rstrip("\n").split("\t")[2] for l in f}


def call(url, body, method="POST"):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def poll(url, alias):
    """Every document of the alias as one snapshot: a scroll keeps the point in time of its
    first page (and the index the alias named then) for all pages."""
    q = {"size": 10000, "sort": ["_doc"],
         "_source": ["item_id", "window_end", "click_count"]}
    got, sid = {}, None
    try:
        page = call(f"{url}/{alias}/_search?scroll=1m", q)
        while True:
            sid = page.get("_scroll_id")
            hits = page["hits"]["hits"]
            for h in hits:
                s = h["_source"]
                got[(s["item_id"], str(s["window_end"]))] = str(s["click_count"])
            if len(hits) < 10000:
                break
            page = call(f"{url}/_search/scroll", {"scroll": "1m", "scroll_id": sid})
    except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
        return None, str(e)
    finally:
        if sid:
            try:
                call(f"{url}/_search/scroll", {"scroll_id": sid}, method="DELETE")
            except (urllib.error.URLError, OSError, ValueError):
                pass
    return got, None


def main():
    url, alias, v1p, v2p, out, stop = sys.argv[1:7]
    v1, v2 = load(v1p), load(v2p)
    runs, n, last = [], 0, None
    while True:
        last_round = os.path.exists(stop)  # one more whole read after STOPFILE appears
        got, err = poll(url, alias)
        label = "v1" if got == v1 else "v2" if got == v2 else "other"
        if label == "other":
            why = err or (f"{len(got)} docs, {len(set(got) - set(v1) - set(v2))} in neither "
                          f"truth, {sum(1 for k in got if got[k] != v2.get(k, got[k]))} off v2")
            label = f"other({why})"
        if label != last:
            runs.append([label, n, 0])
            last = label
        runs[-1][2] += 1
        n += 1
        if last_round:
            break
        time.sleep(0.05)
    with open(out, "w") as f:
        for label, first, count in runs:
            f.write(f"{label} {first} {count}\n")
        f.write(f"polls {n}\n")


if __name__ == "__main__":
    main()
