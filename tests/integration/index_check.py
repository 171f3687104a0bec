#!/usr/bin/env python3
"""Compares an Elasticsearch index of hourly click counts with kappa-gen's truth.

Used by the scripts that prove results exact (tests/integration/chaos). Rows are (item,
window end) -> count; a kappa-gen truth file (item, start, end, count; '#' comments) and
es_dump.py's output (item, end, count) are both read, told apart by their number of fields.

  index_check.py expect OUT TRUTH...       what the index must hold (later truths overwrite
                                           earlier ones), sorted as es_dump.py sorts
  index_check.py progress URL INDEX EXP    prints documents and clicks against EXP; exit 0
                                           when both totals match
  index_check.py diff GOT EXP              prints how many rows differ, and a few of them
  index_check.py kafka COMMITTED EXP [REF]  COMMITTED: the documents a read_committed consumer
                                           read from a Kafka sink's topic (one per line), REF:
                                           an uninterrupted run's file sink output. Prints
                                           records, ids, duplicates (records beyond one per id
                                           the reference emits) and ids equal to EXP; exit 0
                                           when the last value per id equals EXP and (with
                                           REF) every id was committed as often as REF has it
"""
import json
import sys
import urllib.request


def rows(path):
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) == 4:  # a kappa-gen truth: item, start, end, count
                yield (fields[0], fields[2]), fields[3]
            else:  # es_dump.py's output or an expectation: item, end, count
                yield (fields[0], fields[1]), fields[2]


def expect(out, truths):
    want = {}
    for t in truths:
        want.update(rows(t))
    with open(out, "w") as f:
        f.writelines(sorted(f"{i}\t{e}\t{n}\n" for (i, e), n in want.items()))


def progress(url, index, expected):
    want = [int(n) for _, n in rows(expected)]
    q = {"size": 0, "track_total_hits": True, "aggs": {"c": {"sum": {"field": "click_count"}}}}
    req = urllib.request.Request(f"{url}/{index}/_search", data=json.dumps(q).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            a = json.load(r)
        docs, clicks = a["hits"]["total"]["value"], int(a["aggregations"]["c"]["value"])
    except Exception:  # no index yet, or the node is busy: report nothing counted
        docs, clicks = 0, 0
    print(f"{docs}/{len(want)} documents, {clicks}/{sum(want)} clicks")
    return 0 if (docs, clicks) == (len(want), sum(want)) else 1


def diff(got_path, want_path):
    got, want = dict(rows(got_path)), dict(rows(want_path))
    bad = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    print(f"  {len(bad)} documents differ, e.g.:")
    for k in bad[:5]:
        print(f"    {k[0]}|{k[1]}: index {got.get(k, '-')}, expected {want.get(k, '-')}")
    return 1 if bad else 0


def doc_counts(path):
    """(item, window end) -> [records, last click count] of an NDJSON file of window results."""
    got = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            d = json.loads(line)
            if d["item_id"] == "clock":  # the driver's clock records, not part of the truth
                continue
            c = got.setdefault((d["item_id"], str(d["window_end"])), [0, None])
            c[0] += 1
            c[1] = str(d["click_count"])
    return got


def kafka(committed, expected, reference=None):
    got, want = doc_counts(committed), dict(rows(expected))
    last = {k: v[1] for k, v in got.items()}
    records = sum(v[0] for v in got.values())
    equal = sum(1 for k, n in want.items() if last.get(k) == n)
    ok = last == want
    text = f"{records} records, {len(got)} ids, {equal}/{len(want)} ids equal to the truth"
    if reference is not None:
        ref = {k: v[0] for k, v in doc_counts(reference).items()}
        dups = sum(max(0, v[0] - ref.get(k, 0)) for k, v in got.items())
        short = sum(1 for k, n in ref.items() if got.get(k, [0])[0] < n)
        text += (f"; the reference run: {sum(ref.values())} records for {len(ref)} ids; "
                 f"{dups} duplicates, {short} ids committed fewer times than there")
        ok = ok and dups == 0 and short == 0
        bad = sorted(k for k, v in got.items() if v[0] != ref.get(k, 0))
        for k in bad[:5]:
            print(f"  {k[0]}|{k[1]}: committed {got[k][0]} times, reference {ref.get(k, 0)}",
                  file=sys.stderr)
    if last != want:
        for k in sorted(k for k in set(last) | set(want) if last.get(k) != want.get(k))[:5]:
            print(f"  {k[0]}|{k[1]}: committed {last.get(k, '-')}, expected {want.get(k, '-')}",
                  file=sys.stderr)
    print(text)
    return 0 if ok else 1


def main(argv):
    if len(argv) >= 3 and argv[0] == "expect":
        expect(argv[1], argv[2:])
        return 0
    if len(argv) == 4 and argv[0] == "progress":
        return progress(*argv[1:])
    if len(argv) in (3, 4) and argv[0] == "kafka":
        return kafka(*argv[1:])
    if len(argv) == 3 and argv[0] == "diff":
        return diff(*argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
