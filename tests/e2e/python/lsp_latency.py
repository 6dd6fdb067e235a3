"""Edit-to-visible latency of `gnn-coder lsp` (README, "Editors (LSP)"): a protocol-level
client indexes ROOT into INDEX (an existing index of ROOT is refreshed), opens a Python file
of it, then ten times appends a new function to the unsaved buffer (`didChange`) and asks
`workspace/symbol` for it until it is found; prints the times, and a few hybrid queries.

Usage: python3 tests/e2e/python/lsp_latency.py BIN ROOT INDEX [RELATIVE_PYTHON_FILE]
"""
import json, subprocess, sys, time, statistics, os
BIN, ROOT, IDX = sys.argv[1], sys.argv[2], sys.argv[3]
REL = sys.argv[4] if len(sys.argv) > 4 else "python/werkzeug/werkzeug/utils.py"
p = subprocess.Popen([BIN, "lsp", "--index", IDX], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
def send(m):
    b = json.dumps(m).encode(); p.stdin.write(b"Content-Length: %d\r\n\r\n" % len(b) + b); p.stdin.flush()
def read():
    n = 0
    while True:
        l = p.stdout.readline().decode().strip()
        if not l: break
        if l.lower().startswith("content-length"): n = int(l.split(":")[1])
    return json.loads(p.stdout.read(n))
nid = [0]
def req(method, params):
    nid[0] += 1; i = nid[0]; send({"jsonrpc":"2.0","id":i,"method":method,"params":params})
    while True:
        m = read()
        if m.get("id") == i and "method" not in m: return m
uri = lambda path: "file://" + path
req("initialize", {"processId": None, "workspaceFolders": [{"uri": uri(ROOT), "name": "corpus"}], "capabilities": {}})
send({"jsonrpc":"2.0","method":"initialized","params":{}})
t = time.time()
while True:
    r = req("workspace/symbol", {"query": "levenshtein"})
    if r["result"] or time.time() - t > 300: break
    time.sleep(0.2)
print("workspace ready after %.1f s" % (time.time() - t))
f = os.path.join(ROOT, REL)
text = open(f).read()
send({"jsonrpc":"2.0","method":"textDocument/didOpen","params":{"textDocument":{"uri":uri(f),"languageId":"python","version":1,"text":text}}})
req("workspace/symbol", {"query": "x"})
ts = []
for k in range(10):
    name = "zebra_probe_%d_fn" % k
    new = text + "\n\ndef %s(q):\n    return q * %d\n" % (name, k)
    t = time.perf_counter()
    send({"jsonrpc":"2.0","method":"textDocument/didChange","params":{"textDocument":{"uri":uri(f),"version":k+2},"contentChanges":[{"text":new}]}})
    while True:
        r = req("workspace/symbol", {"query": name})
        if any(s["name"] == name for s in r["result"]): break
    ts.append((time.perf_counter() - t) * 1000)
print("didChange -> symbol found, ms:", [round(x) for x in ts], "median %.0f" % statistics.median(ts))
q = []
for w in ["parse a config file", "retry with backoff", "levenshtein distance", "read a json file", "url encode a string"]:
    t = time.perf_counter(); req("workspace/symbol", {"query": w}); q.append((time.perf_counter()-t)*1000)
print("workspace/symbol hybrid ms:", [round(x) for x in q])
req("shutdown", None); send({"jsonrpc":"2.0","method":"exit"})
