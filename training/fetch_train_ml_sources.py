#!/usr/bin/env python3
"""Fetch the JavaScript, TypeScript, Go and Java packages of the multi-language training manifest
into a sources tree for the training-data miner (`cargo run -p gnn-coder-train --bin mine`).

usage: training/fetch_train_ml_sources.py [OUT]        (default: <repo>/data/train-src)
  env TRAIN_MANIFEST_ML  default <repo>/../shared/bench/train/manifest-ml.json
  env DEV_MANIFEST_ML    default <repo>/../shared/bench/dev/manifest-ml.json (safety check)

Layout written beside fetch_train_sources.sh's python/ and rust/ groups (the miner mines each
group's own language; `typescript` also takes .tsx):
  OUT/javascript/<name>-<ver>/...  `npm pack NAME@VER`, unpacked (scoped `@a/b` -> `a__b`)
  OUT/typescript/<name>-<ver>/...  the same for the TypeScript packages
  OUT/go/<pkg>/...                 `apt-get download PKG=VER` + `dpkg -x`, the Go source root
                                   (/usr/share/gocode/src, or the Go tree's src/ for golang-X.Y-src)
  OUT/java/<pkg>[__<sub>]/...      the .java files of a Debian source package (loose, or inside its
                                   src.zip / jars / tarballs); "PKG/SUBDIR" keeps only that folder
  OUT/.ml-work/                    downloads (kept so re-runs are cheap)
The fetchers are ../shared/bench/mine.py's own (npm_fetch, deb_fetch, go_root, java_sources), so
the packages are byte for byte those the benchmarks are built from. Each finished package holds
a `.fetched` file naming its version, so a re-run skips it (Debian folders carry no version in
their name: a Debian version has dashes of its own, and the miner takes a trailing `-<digits...>`
as the version). A package also named in the dev
manifest is refused. A package that fails is reported and skipped; the exit status is non-zero
only when nothing could be fetched. Fetched third-party code stays under data/ (git-ignored).
"""
import json
import os
import shutil
import sys
import tarfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "..", "shared", "bench")
sys.path.insert(0, BENCH)
import mine  # noqa: E402  (../shared/bench/mine.py)


def safe(name):
    return name.lstrip("@").replace("/", "__")


def done(d, ver):
    try:
        return open(os.path.join(d, ".fetched")).read().strip() == ver
    except OSError:
        return False


def finish(tmp, d, ver):
    with open(os.path.join(tmp, ".fetched"), "w") as f:
        f.write(ver + "\n")
    shutil.rmtree(d, ignore_errors=True)
    os.rename(tmp, d)


def fetch_npm(out, work, lang, name, ver):
    d = os.path.join(out, lang, f"{safe(name)}-{ver}")
    if done(d, ver):
        return "kept"
    tmp = d + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with tarfile.open(mine.npm_fetch(work, name, ver)) as t:
        for m in t.getmembers():
            if not m.isfile() or "/" not in m.name:
                continue
            rel = m.name.split("/", 1)[1]
            if rel.startswith("/") or ".." in rel.split("/"):
                continue
            dst = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(dst, "wb") as f:
                f.write(t.extractfile(m).read())
    finish(tmp, d, ver)
    return "fetched"


def fetch_go(out, work, key, ver):
    d = os.path.join(out, "go", key)
    if done(d, ver):
        return "kept"
    root = mine.go_root(mine.deb_fetch(work, key, ver))
    tmp = d + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(root, tmp, symlinks=True, ignore=shutil.ignore_patterns("testdata", "vendor"))
    finish(tmp, d, ver)
    return "fetched"


def fetch_java(out, work, key, ver):
    pkg, sub = (key.split("/", 1) + [""])[:2]
    d = os.path.join(out, "java", pkg + ("__" + safe(sub) if sub else ""))
    if done(d, ver):
        return "kept"
    tmp = d + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name, size, read in mine.java_sources(mine.deb_fetch(work, key, ver)):
        if sub and not name.startswith(sub.rstrip("/") + "/"):
            continue
        if name.startswith("/") or ".." in name.split("/"):
            continue
        dst = os.path.join(tmp, name)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "wb") as f:
            f.write(read())
    finish(tmp, d, ver)
    return "fetched"


def main():
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "data", "train-src"))
    train = json.load(open(os.environ.get("TRAIN_MANIFEST_ML", os.path.join(BENCH, "train", "manifest-ml.json"))))
    dev = json.load(open(os.environ.get("DEV_MANIFEST_ML", os.path.join(BENCH, "dev", "manifest-ml.json"))))
    work = os.path.join(out, ".ml-work")
    os.makedirs(work, exist_ok=True)
    jobs = []
    for lang in ("javascript", "typescript"):
        jobs += [(lang, k, v, lambda lang=lang, k=k, v=v: fetch_npm(out, work, lang, k, v))
                 for k, v in train.get(lang, {}).items()]
    jobs += [("go", k, v, lambda k=k, v=v: fetch_go(out, work, k, v)) for k, v in train.get("go", {}).items()]
    jobs += [("java", k, v, lambda k=k, v=v: fetch_java(out, work, k, v)) for k, v in train.get("java", {}).items()]
    ok = failed = 0
    for i, (lang, key, ver, run) in enumerate(jobs, 1):
        if key in dev.get(lang, {}):
            print(f"[{i}/{len(jobs)}] {lang}/{key}: REFUSED (in the dev manifest)", flush=True)
            continue
        try:
            what = run()
            ok += 1
            print(f"[{i}/{len(jobs)}] {lang}/{key} {ver}: {what}", flush=True)
        except (Exception, SystemExit) as e:  # mine.deb_fetch exits on a missing version
            failed += 1
            print(f"[{i}/{len(jobs)}] {lang}/{key} {ver}: FAILED: {str(e).strip()[:300]}", flush=True)
    print(f"{ok} packages ready, {failed} failed, in {out}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
