#!/usr/bin/env python3
"""What the failpoint tests (test_failpoints.c) check outside the engine.

  ckpt_check.py orphans JOBDIR RETAIN [before-gc]
      Lists every file of a job's checkpoint directory (DIR/<job>) that no kept checkpoint
      names: a kept checkpoint is a chk-<N> whose _metadata verifies against _metadata.sha256;
      it may hold _metadata, _metadata.sha256 and the files its acknowledgements list (RocksDB
      files, blob files); shared/
      may hold the SSTs some kept checkpoint lists and their .sha256 sidecars. Anything else
      (temp files, a chk-<N> without valid metadata, unreferenced shared files) is an orphan.
      Also fails when more than RETAIN checkpoints are kept. Exit 0 when clean. With
      `before-gc` (right after a run, before the next GC pass), unreferenced shared files are
      only listed: GC spares shared files younger than 2 s (an upload may be reusing them), so
      those of the checkpoints the last 2 s of a run superseded wait for the next pass.

  ckpt_check.py kafka-last IN OUT
      IN: the records a read_committed consumer read (one JSON document per line, in log
      order per partition). OUT: "item_id<TAB>window_end<TAB>click_count" of the last record
      per (item, window end), sorted as the truth files are. Prints the number of records
      read and of records read twice (byte-identical) on stdout: "N DUPS".

  ckpt_check.py final JOBDIR
      The newest checkpoint with metadata is a final one (docs/checkpoints.md, Bounded inputs):
      every source subtask's acknowledgement says "end_of_input": true, and there is one.
      Prints its id and the number of source acknowledgements. Exit 0 when it is.
"""
import hashlib
import json
import os
import sys


def orphans(jobdir, retain, before_gc):
    kept, named, problems = [], set(), []
    for name in sorted(os.listdir(jobdir)):
        path = os.path.join(jobdir, name)
        if not name.startswith("chk-"):
            continue
        meta, sha = os.path.join(path, "_metadata"), os.path.join(path, "_metadata.sha256")
        try:
            raw = open(meta, "rb").read()
            want = open(sha).read().strip()
        except OSError:
            continue
        if hashlib.sha256(raw).hexdigest() != want:
            continue
        kept.append(name)
        named.update({f"{name}/_metadata", f"{name}/_metadata.sha256"})
        for sub in json.loads(raw).get("subtasks", []):
            for entry in sub.get("entries", []):
                files = list(entry.get("files") or [])
                if entry.get("blob_file"):  # a blob larger than the inline limit
                    files.append(entry["blob_file"])
                for f in files:
                    named.add(f["path"])
                    if f.get("shared"):
                        named.add(f["path"] + ".sha256")
    for root, _, files in os.walk(jobdir):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), jobdir)
            if rel in named:
                continue
            if before_gc and rel.startswith("shared/") and ".tmp" not in rel:
                print(f"left for the next GC pass: {rel}", file=sys.stderr)
            else:
                problems.append(f"orphan: {rel}")
    for rel in sorted(named):
        if not os.path.exists(os.path.join(jobdir, rel)):
            problems.append(f"missing: {rel} (named by a kept checkpoint)")
    if len(kept) > retain:
        problems.append(f"{len(kept)} checkpoints kept ({' '.join(kept)}), retain is {retain}")
    if not kept:
        problems.append("no valid checkpoint kept")
    for p in problems:
        print(p)
    print(f"kept: {' '.join(kept)}; {len(named)} files named", file=sys.stderr)
    return 1 if problems else 0


def kafka_last(inp, out):
    last, seen, n, dups = {}, set(), 0, 0
    with open(inp, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            n += 1
            if line in seen:
                dups += 1
            seen.add(line)
            d = json.loads(line)
            last[(d["item_id"], int(d["window_end"]))] = int(d["click_count"])
    rows = sorted(f"{item}\t{end}\t{count}" for (item, end), count in last.items())
    with open(out, "w", encoding="utf-8") as f:
        f.writelines(r + "\n" for r in rows)
    print(n, dups)
    return 0


def final(jobdir):
    ids = sorted((int(n[4:]) for n in os.listdir(jobdir)
                  if n.startswith("chk-") and n[4:].isdigit() and
                  os.path.exists(os.path.join(jobdir, n, "_metadata"))), reverse=True)
    if not ids:
        print("no checkpoint with metadata in", jobdir, file=sys.stderr)
        return 1
    with open(os.path.join(jobdir, "chk-%d" % ids[0], "_metadata")) as f:
        meta = json.load(f)
    flags = [s["end_of_input"] for s in meta["subtasks"] if "end_of_input" in s]
    print("chk-%d: %d source acknowledgement(s), %d at the end of the input" %
          (ids[0], len(flags), sum(1 for x in flags if x is True)), file=sys.stderr)
    return 0 if flags and all(x is True for x in flags) else 1


def main():
    if len(sys.argv) in (4, 5) and sys.argv[1] == "orphans":
        return orphans(sys.argv[2], int(sys.argv[3]), sys.argv[4:] == ["before-gc"])
    if len(sys.argv) == 3 and sys.argv[1] == "final":
        return final(sys.argv[2])
    if len(sys.argv) == 4 and sys.argv[1] == "kafka-last":
        return kafka_last(sys.argv[2], sys.argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
