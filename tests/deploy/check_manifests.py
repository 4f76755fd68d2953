"""Checks deploy/: the AWS Batch job definition and submit input (JSON), the
Kubernetes Job (YAML) and the Dockerfile, field by field, against the README
("Running on AWS with many workers"), the systemd unit and each other; then
runs what the Dockerfile runs, outside a container, on the .deb extracted
into a scratch root (--root): the ICD registration and configuration steps,
the OpenCL loader reading that registration, and the container's command.

    check_manifests.py --source-dir SRC --root ROOT --deb DEB --work DIR
"""
import argparse
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys

import yaml

COMMAND = ["canopy", "drain", "-c", "/etc/canopy.ini"]
GRACE_S = 120
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def canopy_config(exe, env_vars, args=()):
    """`canopy config show` with only env_vars (and PATH) in the environment."""
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    env.update(env_vars)
    r = subprocess.run([exe, "config", "show", *args], env=env, capture_output=True,
                       text=True, check=False)
    return r.returncode, r.stdout, r.stderr


def parse_ini_dump(text):
    out, section = {}, None
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif " = " in line and section:
            k, _, v = line.partition(" = ")
            out[f"{section}.{k}"] = v
        elif line.endswith(" =") and section:
            out[f"{section}.{line[:-2]}"] = ""
    return out


def check_env_applies(exe, ini, env, label):
    """Every CANOPY_* variable must name a key and set it (value in the dump)."""
    rc, out, err = canopy_config(exe, env, ["-c", ini])
    check(rc == 0, f"{label}: canopy config show accepts the environment ({err.strip()})")
    dump = parse_ini_dump(out)
    for name, value in env.items():
        if not name.startswith("CANOPY_"):
            continue
        matches = [k for k in dump if "CANOPY_" + k.replace(".", "_").upper() == name]
        check(len(matches) == 1, f"{label}: {name} is a configuration key")
        if matches and "conninfo" not in name:
            check(dump[matches[0]] == value, f"{label}: {name}={value} takes effect")


def batch_exit_action(rules, code):
    """AWS Batch evaluateOnExit: the first rule whose every condition (a glob)
    matches a container that exited with `code` on a healthy host."""
    facts = {"onExitCode": str(code), "onStatusReason": "Essential container in task exited",
             "onReason": ""}
    for r in rules:
        conds = [k for k in facts if k in r]
        if conds and all(fnmatch.fnmatchcase(facts[k], r[k]) for k in conds):
            return r["action"]
    return "RETRY"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--deb", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    src, root = a.source_dir, a.root
    exe = os.path.join(root, "usr/bin/canopy")
    shipped_ini = os.path.join(root, "usr/share/canopy/canopy.ini")
    readme = open(os.path.join(src, "README.md"), encoding="utf-8").read()
    aws = readme[readme.index("## Running on AWS with many workers"):]
    aws = aws[:aws.index("\n## ", 5)]

    # ---- the README's spelling ------------------------------------------------
    check(f"`{' '.join(COMMAND)}`" in aws, "README: command `canopy drain -c /etc/canopy.ini`")
    check("resourceRequirements: GPU 1" in aws, "README: Batch GPU 1")
    for f in ["deploy/aws-batch/job-definition.json", "deploy/kubernetes/job.yaml",
              "deploy/docker/Dockerfile", "deploy/systemd/canopy-drain@.service"]:
        check(f in aws, f"README's section names {f}")

    # ---- AWS Batch -----------------------------------------------------------------
    jd = json.load(open(os.path.join(src, "deploy/aws-batch/job-definition.json")))
    sj = json.load(open(os.path.join(src, "deploy/aws-batch/submit-job.json")))
    cp = jd["containerProperties"]
    check(jd["type"] == "container", "batch: type container")
    check(cp["command"] == COMMAND, f"batch: command {cp['command']}")
    rr = {r["type"]: r["value"] for r in cp["resourceRequirements"]}
    check(rr.get("GPU") == "1", "batch: resourceRequirements GPU 1")
    check(isinstance(rr.get("GPU"), str) and all(isinstance(v, str) for v in rr.values()),
          "batch: resource values are strings (the API's type)")
    benv = {e["name"]: e["value"] for e in cp["environment"]}
    bsecrets = {s["name"]: s["valueFrom"] for s in cp.get("secrets", [])}
    check("CANOPY_POSTGRES_CONNINFO" in bsecrets and "CANOPY_POSTGRES_CONNINFO" not in benv,
          "batch: the conninfo comes from a secret store, not the plain environment")
    check(not any(k.startswith(("AWS_ACCESS", "AWS_SECRET", "AWS_SESSION")) for k in benv),
          "batch: no static AWS credentials (the job role provides them)")
    check(cp.get("jobRoleArn", "").startswith("arn:aws:iam::"), "batch: jobRoleArn")
    check(benv.get("CANOPY_LOG_FORMAT") == "json", "batch: JSON logs for CloudWatch")
    rules = jd["retryStrategy"]["evaluateOnExit"]
    check(len(rules) <= 5, "batch: at most 5 evaluateOnExit rules (API limit)")
    for code, want in [(1, "RETRY"), (2, "EXIT"), (3, "EXIT"), (4, "EXIT")]:
        got = batch_exit_action(rules, code)
        check(got == want, f"batch: exit {code} -> {want} (got {got})")
    check(sj["jobDefinition"] == jd["jobDefinitionName"], "submit-job: names the job definition")
    check(sj["arrayProperties"]["size"] >= 2, "submit-job: an array job")
    ecs = open(os.path.join(src, "deploy/aws-batch/ecs.config")).read()
    check(re.search(rf"^ECS_CONTAINER_STOP_TIMEOUT={GRACE_S}s$", ecs, re.M) is not None,
          f"batch: ECS_CONTAINER_STOP_TIMEOUT={GRACE_S}s (SIGTERM grace)")

    # ---- Kubernetes --------------------------------------------------------------
    docs = list(yaml.safe_load_all(open(os.path.join(src, "deploy/kubernetes/job.yaml"))))
    check(len(docs) == 1, "k8s: one document")
    job = docs[0]
    check(job["apiVersion"] == "batch/v1" and job["kind"] == "Job", "k8s: batch/v1 Job")
    spec = job["spec"]
    check(spec.get("parallelism", 0) >= 2, "k8s: parallelism N")
    check("completions" not in spec, "k8s: work-queue Job (no completions)")
    pod = spec["template"]["spec"]
    check(pod["restartPolicy"] == "Never", "k8s: restartPolicy Never (podFailurePolicy needs it)")
    check(pod["terminationGracePeriodSeconds"] == GRACE_S, f"k8s: SIGTERM grace {GRACE_S} s")
    check(bool(pod.get("serviceAccountName")), "k8s: a service account (IRSA / Pod Identity)")
    (ctr,) = pod["containers"]
    check(ctr["command"] == COMMAND, f"k8s: command {ctr['command']}")
    check("args" not in ctr, "k8s: no args")
    check(ctr["resources"]["limits"].get("nvidia.com/gpu") == 1, "k8s: nvidia.com/gpu: 1")
    kenv = {e["name"]: e for e in ctr["env"]}
    conn = kenv.get("CANOPY_POSTGRES_CONNINFO", {})
    check("secretKeyRef" in conn.get("valueFrom", {}), "k8s: the conninfo from a Secret")
    kplain = {n: e["value"] for n, e in kenv.items() if "value" in e}
    check(kplain == benv, "k8s and batch set the same environment")
    check(set(kenv) == set(benv) | set(bsecrets), "k8s and batch: same variables, secrets included")
    codes = {}
    for r in spec["podFailurePolicy"]["rules"]:
        oe = r.get("onExitCodes")
        if oe:
            check(oe.get("containerName") == ctr["name"], "k8s: podFailurePolicy names the container")
            for c in oe["values"]:
                codes[c] = r["action"]
    check(codes.get(2) == "FailJob", "k8s: exit 2 (configuration) fails the Job")
    check(codes.get(3) == "Ignore" and codes.get(4) == "Ignore", "k8s: exits 3 and 4 ignored")

    # ---- systemd: the same grace --------------------------------------------------
    svc = open(os.path.join(src, "deploy/systemd/canopy-drain@.service")).read()
    check(f"\nTimeoutStopSec={GRACE_S}\n" in svc, f"systemd: TimeoutStopSec={GRACE_S}")

    # ---- Dockerfile ----------------------------------------------------------------
    text = open(os.path.join(src, "deploy/docker/Dockerfile")).read()
    text = re.sub(r"\\\n", " ", text)  # continuation lines
    instr = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1].strip())
             for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    froms = [v for k, v in instr if k == "FROM"]
    check(froms == ["debian:12"], f"docker: FROM debian:12 ({froms})")
    check(not [v for k, v in instr if k == "ENTRYPOINT"], "docker: no ENTRYPOINT")
    cmds = [v for k, v in instr if k == "CMD"]
    check(len(cmds) == 1 and json.loads(cmds[0]) == COMMAND, f"docker: CMD {cmds}")
    copies = [v.split() for k, v in instr if k == "COPY"]
    deb_name = os.path.basename(a.deb)
    check(any(fnmatch.fnmatchcase(deb_name, c[0]) for c in copies),
          f"docker: COPY matches the package cpack writes ({deb_name})")
    runs = [v for k, v in instr if k == "RUN"]
    check(any(re.search(r"apt-get install .*/tmp/canopy_\*_amd64\.deb", r) for r in runs),
          "docker: apt-get installs the .deb")
    check(any("ca-certificates" in r for r in runs), "docker: CA certificates for TLS to AWS")
    icd = [r for r in runs if "/etc/OpenCL/vendors/nvidia.icd" in r]
    check(len(icd) == 1 and "echo libnvidia-opencl.so.1 > /etc/OpenCL/vendors/nvidia.icd" in icd[0],
          "docker: /etc/OpenCL/vendors/nvidia.icd names libnvidia-opencl.so.1")
    denv = {}
    for k, v in instr:
        if k == "ENV":
            for tok in shlex.split(v):
                n, _, val = tok.partition("=")
                denv[n] = val

    # Run the Dockerfile's configuration step outside a container, into ROOT.
    if icd:
        step = icd[0].replace("/etc/", root + "/etc/").replace("/usr/share/canopy",
                                                               root + "/usr/share/canopy")
        r = subprocess.run(["sh", "-ec", step], capture_output=True, text=True, check=False)
        check(r.returncode == 0, f"docker: RUN {icd[0]!r} outside a container ({r.stderr.strip()})")
    vendors = os.path.join(root, "etc/OpenCL/vendors")
    icd_file = os.path.join(vendors, "nvidia.icd")
    check(os.path.exists(icd_file) and open(icd_file).read() == "libnvidia-opencl.so.1\n",
          "docker: nvidia.icd content")
    # The ICD loader the package depends on reads that directory by default.
    loader = subprocess.run(["sh", "-c", "strings $(ldconfig -p | awk '/libOpenCL.so.1 /{print $NF; exit}')"],
                            capture_output=True, text=True, check=False).stdout
    check("/etc/OpenCL/vendors" in loader, "ocl-icd reads /etc/OpenCL/vendors")
    etc_ini = os.path.join(root, "etc/canopy.ini")
    check(os.path.exists(etc_ini), "docker: /etc/canopy.ini from the package's default")

    # The loader, given only that registration: NVIDIA's platform where its
    # driver is installed, else the message naming the packages (exit 1).
    env = {"PATH": "/usr/bin:/bin", "HOME": a.work, "OCL_ICD_VENDORS": vendors}
    os.makedirs(a.work, exist_ok=True)
    r = subprocess.run([exe, "devices"], env=env, capture_output=True, text=True, cwd=a.work)
    check((r.returncode == 0 and "NVIDIA" in r.stdout) or
          (r.returncode == 1 and "no OpenCL platform found" in r.stderr and "nvidia" in r.stderr),
          f"devices with the NVIDIA registration only: rc {r.returncode} {r.stderr.strip()[:160]}")
    # The same mechanism with a driver present here: PoCL's .icd next to it.
    pocl = "/etc/OpenCL/vendors/pocl.icd"
    if os.path.exists(pocl):
        open(os.path.join(vendors, "pocl.icd"), "w").write(open(pocl).read())
        r = subprocess.run([exe, "devices"], env=env, capture_output=True, text=True, cwd=a.work)
        check(r.returncode == 0 and "selected: " in r.stdout,
              f"devices through {vendors}: rc {r.returncode} {r.stderr.strip()[:160]}")

    # The container's environment (Dockerfile ENV + the manifests') names real
    # keys and takes effect with the container's /etc/canopy.ini.
    check_env_applies(exe, etc_ini, {**denv, **benv}, "docker+batch env")
    check_env_applies(exe, etc_ini, {**denv, **kplain}, "docker+k8s env")
    # The container's command, with /etc/canopy.ini the one the image holds:
    # without a queue it stops at the configuration check (exit 2).
    cmd = [exe if c == "canopy" else (etc_ini if c == "/etc/canopy.ini" else c) for c in COMMAND]
    r = subprocess.run(cmd, env={**env, **denv}, capture_output=True, text=True, cwd=a.work,
                       timeout=60)
    check(r.returncode == 2 and "queue_url" in r.stderr,
          f"docker CMD runs: {' '.join(COMMAND)} -> rc {r.returncode} {r.stderr.strip()[:160]}")

    print("FAIL" if failures else "PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
