#!/usr/bin/env python3
"""Dumps EVERY document of an Elasticsearch index, whatever its fields, as one line
"_id<TAB>_source" with _source re-serialised canonically (keys sorted, no spaces), lines sorted
in byte order: two indices hold the same documents iff their dumps are byte-identical. Used by
the replay test, whose jobs write sessions and quiet users as well as hourly counts (es_dump.py
knows only the hourly-count fields). Reads with a scroll (no sort on _id, which OpenSearch
refuses by default) after a _refresh.

Usage: es_sources.py URL INDEX OUT [TSV_OUT FIELD,FIELD,...]
With TSV_OUT, also writes the listed _source fields of each document, tab-separated and
sorted, e.g. item_id,window_end,click_count for a comparison with kappa-gen's truth.
Prints the number of documents."""
import json
import sys
import urllib.request


def call(url, body=None, method=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"},
                                 method=method or ("POST" if body is not None else "GET"))
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def main():
    if len(sys.argv) not in (4, 6):
        sys.exit(__doc__)
    url, index, out = sys.argv[1:4]
    fields = sys.argv[5].split(",") if len(sys.argv) == 6 else None
    call(f"{url}/{index}/_refresh", {})
    page = call(f"{url}/{index}/_search?scroll=2m", {"size": 10000, "sort": ["_doc"]})
    docs, tsv = [], []
    while page["hits"]["hits"]:
        for h in page["hits"]["hits"]:
            s = h["_source"]
            docs.append(h["_id"] + "\t" + json.dumps(s, sort_keys=True, separators=(",", ":")) + "\n")
            if fields:
                tsv.append("\t".join(str(s[f]) for f in fields) + "\n")
        page = call(f"{url}/_search/scroll", {"scroll": "2m", "scroll_id": page["_scroll_id"]})
    call(f"{url}/_search/scroll", {"scroll_id": page["_scroll_id"]}, method="DELETE")
    with open(out, "w") as f:
        f.writelines(sorted(docs))
    if fields:
        with open(sys.argv[4], "w") as f:
            f.writelines(sorted(tsv))
    print(len(docs))


if __name__ == "__main__":
    main()
