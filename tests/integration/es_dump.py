#!/usr/bin/env python3
"""Dumps an Elasticsearch index of hourly click counts to "item_id<TAB>window_end<TAB>count"
lines (sorted), after a _refresh, paging with search_after. Used by the end-to-end tests to
compare an index with kappa-gen's truth. Usage: es_dump.py URL INDEX OUT"""
import json
import sys
import urllib.request


def call(url, body=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json"},
                                 method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def main():
    url, index, out = sys.argv[1:4]
    call(f"{url}/{index}/_refresh", {})
    rows, after = [], None
    while True:
        q = {"size": 10000, "sort": [{"window_end": "asc"}, {"item_id.keyword": "asc"}],
             "_source": ["item_id", "window_end", "click_count"]}
        if after:
            q["search_after"] = after
        hits = call(f"{url}/{index}/_search", q)["hits"]["hits"]
        if not hits:
            break
        for h in hits:
            s = h["_source"]
            expect = f'{s["item_id"]}|{s["window_end"]}'
            if h["_id"] != expect:
                sys.exit(f"document id {h['_id']} does not match its fields ({expect})")
            rows.append(f'{s["item_id"]}\t{s["window_end"]}\t{s["click_count"]}\n')
        after = hits[-1]["sort"]
    with open(out, "w") as f:
        f.writelines(sorted(rows))


if __name__ == "__main__":
    main()
