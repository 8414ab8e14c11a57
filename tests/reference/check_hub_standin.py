#!/usr/bin/env python3
"""Shows that the stand-in hub (tests/cli/hub_server.c) behaves like
huggingface.co as huggingface_hub sees it, by running huggingface_hub's own
client against it, and records the Hugging Face cache layout that
snapshot_download writes, which tests/cli/test_pull.c rebuilds to test
`--model org/name` finding a model in that cache.

  python tests/reference/check_hub_standin.py build/tests/hub_server [--compare]

With --compare the layout is written to a temporary file and compared with
the committed one instead (how CTest runs it where huggingface_hub is
installed).

Checks (each printed; any failure exits 1):
  - snapshot_download of test/tiny (the revision API, the tree API, HEAD and
    GET of /resolve/{commit}/..., the LFS redirect to the CDN port, whose
    server answers 400 to an Authorization header, quoted and weak ETags)
    gives files identical to the fixture model, with a token too;
  - the files of refs/pr/1 and of a commit are those the stand-in serves;
  - test/private with the token works, and without it raises
    RepositoryNotFoundError; test/missing raises RepositoryNotFoundError;
    test/gated raises GatedRepoError; a wrong token is refused;
  - snapshot_download of test/sharded with allow_patterns for the index and
    its shards;
  - the CDN never received an Authorization header on a successful download.
Writes tests/fixtures/hub/hf_cache_layout.json."""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "tests/fixtures/models/clip-tiny-a")
failed = 0


def check(ok, what):
    global failed
    print(("ok    " if ok else "FAIL  ") + what)
    failed += not ok


def main():
    server = sys.argv[1]
    compare = "--compare" in sys.argv[2:]
    tmp = tempfile.mkdtemp(prefix="hubref-")
    log = os.path.join(tmp, "log")
    proc = subprocess.Popen([server, log, MODEL, os.path.join(ROOT, "tests/fixtures/hub/sharded"),
                             os.path.join(ROOT, "tests/fixtures/hub/ct2")], stdout=subprocess.PIPE)
    port = int(proc.stdout.readline())
    os.environ["HF_ENDPOINT"] = "http://127.0.0.1:%d" % port
    os.environ["HF_HOME"] = os.path.join(tmp, "home")
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.pop("HF_TOKEN", None)
    import huggingface_hub
    from huggingface_hub import snapshot_download, hf_hub_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, HfHubHTTPError
    print("huggingface_hub", huggingface_hub.__version__)
    cache = os.path.join(tmp, "hub")
    ignore = ["*.bin", "*escape.json"]  # the stand-in lists an unsafe path for tessera to refuse
    try:
        d = snapshot_download("test/tiny", cache_dir=cache, ignore_patterns=ignore, token=False)
        same = all(open(os.path.join(d, f), "rb").read() == open(os.path.join(MODEL, f), "rb").read()
                   for f in os.listdir(MODEL) if os.path.isfile(os.path.join(MODEL, f)))
        check(same, "snapshot_download test/tiny: every file identical to the fixture (%s)" % d)
        commit = os.path.basename(d)
        ref = open(os.path.join(cache, "models--test--tiny", "refs", "main")).read()
        check(ref == commit and len(commit) == 40, "refs/main holds the commit %s" % commit)
        # The layout the C test rebuilds: every path under models--test--tiny.
        layout, base = [], os.path.join(cache, "models--test--tiny")
        for dirpath, dirs, files in os.walk(base):
            for f in sorted(files):
                p = os.path.join(dirpath, f)
                rel = os.path.relpath(p, base)
                if rel.startswith(".no_exist") or rel.startswith("trees") or rel.endswith(".lock"):
                    continue
                if os.path.islink(p):
                    layout.append({"path": rel, "link": os.readlink(p)})
                elif rel.startswith("blobs/"):
                    data = open(p, "rb").read()
                    src = [f for f in os.listdir(MODEL) if os.path.isfile(os.path.join(MODEL, f))
                           and open(os.path.join(MODEL, f), "rb").read() == data]
                    layout.append({"path": rel, "content_of": src[0] if src else None})
                else:
                    layout.append({"path": rel, "text": open(p).read()})
        layout.sort(key=lambda e: e["path"])
        fixture = os.path.join(ROOT, "tests/fixtures/hub/hf_cache_layout.json")
        out = os.path.join(tmp, "layout.json") if compare else fixture
        with open(out, "w") as f:
            json.dump({"huggingface_hub": huggingface_hub.__version__, "repo": "test/tiny",
                       "commit": commit, "entries": layout}, f, indent=1)
        if compare:
            check(json.load(open(fixture))["entries"] == layout,
                  "the layout equals the committed %s" % fixture)
        check(any(e.get("link") for e in layout) and all(
            e.get("content_of") for e in layout if e["path"].startswith("blobs/")),
            "the snapshot links to blobs, each a fixture file (%d entries) -> %s" % (len(layout), out))

        d = snapshot_download("test/tiny", cache_dir=cache, ignore_patterns=ignore, token="s3cret",
                              force_download=True)
        check(open(os.path.join(d, "model.safetensors"), "rb").read() ==
              open(os.path.join(MODEL, "model.safetensors"), "rb").read(),
              "with a token: the CDN download works (the token is not sent to it)")
        d = snapshot_download("test/tiny", revision="refs/pr/1", cache_dir=cache,
                              ignore_patterns=ignore, token=False)
        a = open(os.path.join(d, "model.safetensors"), "rb").read()
        b = bytearray(open(os.path.join(MODEL, "model.safetensors"), "rb").read())
        b[-4] = (b[-4] + 1) % 256
        check(a == bytes(b), "refs/pr/1 is commit 1 (the byte 4 from the end incremented)")
        d2 = snapshot_download("test/tiny", revision=os.path.basename(d), cache_dir=cache,
                               ignore_patterns=ignore, token=False)
        check(d2 == d, "a commit as revision gives the same snapshot")
        d = snapshot_download("test/private", cache_dir=cache, ignore_patterns=ignore,
                              token="s3cret")
        check(os.path.exists(os.path.join(d, "model.safetensors")), "test/private with the token")
        for repo, token, exc, what in [
                ("test/private", False, RepositoryNotFoundError, "test/private without a token"),
                ("test/missing", False, RepositoryNotFoundError, "test/missing (mistyped)"),
                ("test/missing", "s3cret", RepositoryNotFoundError, "test/missing with a token"),
                ("test/tiny", "wrong", HfHubHTTPError, "a wrong token")]:
            try:
                snapshot_download(repo, cache_dir=os.path.join(tmp, "x"), token=token)
                check(False, what + ": no error")
            except exc as e:
                check(True, "%s: %s" % (what, type(e).__name__))
        for token, code in [(False, 401), ("s3cret", 403)]:
            try:
                hf_hub_download("test/gated", "config.json", cache_dir=os.path.join(tmp, "x"),
                                token=token)
                check(False, "test/gated: no error")
            except GatedRepoError as e:
                check(e.response.status_code == code,
                      "test/gated %s a token: GatedRepoError, HTTP %d" %
                      ("with" if token else "without", e.response.status_code))
        d = snapshot_download("test/sharded", cache_dir=cache, token=False,
                              allow_patterns=["model.safetensors.index.json", "model-*.safetensors",
                                              "config.json"])
        idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
        shards = sorted(set(idx["weight_map"].values()))
        check(all(os.path.exists(os.path.join(d, s)) for s in shards),
              "test/sharded: the index and its shards %s" % shards)
        d = snapshot_download("test/ct2", cache_dir=cache, token=False)
        check(sorted(os.listdir(d)) == sorted(os.listdir(os.path.join(ROOT, "tests/fixtures/hub/ct2"))),
              "test/ct2: a CTranslate2 repository")
        lines = open(log).read().splitlines()
        cdn = [l for l in lines if " cdn " in l]
        check(cdn and all("auth=0" in l for l in cdn if l.endswith("-> 200")),
              "the CDN served %d requests, none with an Authorization header" % len(cdn))
        # huggingface_hub 1.x and later list files with the tree API; 0.x from the siblings
        tree = int(huggingface_hub.__version__.split(".")[0]) >= 1
        check((not tree or any("/api/models/test/tiny/tree/" in l for l in lines)) and
              any("revision/refs%2Fpr%2F1" in l for l in lines) and
              any(" HEAD /test/tiny/resolve/" in l for l in lines),
              "huggingface_hub used the revision API (refs/pr/1 percent-encoded)%s and HEAD" %
              (", the tree API" if tree else ""))
    finally:
        proc.kill()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
