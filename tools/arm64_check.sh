#!/usr/bin/env bash
# The device agent on 64-bit ARM Debian bookworm (Python 3.11, glibc 2.36: what Raspberry Pi OS 64-bit is built on),
# emulated with qemu user mode on this machine, installed as a board without a package index installs it: the agent's
# wheel and each runtime's aarch64 wheels (downloaded here for that platform) copied in, `pip install --no-index` into
# a clean venv per runtime, then `netcut-agent device`, `measure` on small models and `serve` (health, a stranger
# refused, a measurement with the token). Timings under emulation mean nothing; only whether it works.
#
#   sudo make arm64-check          (make dist first; root: debootstrap, chroot, mounts; about 15 minutes)
#
# Under user-mode emulation the runtimes read the host's /proc/cpuinfo (an x86 one) and crash on start (signal 11);
# an arm64 cpuinfo (a Raspberry Pi 4's) is bound over it inside the chroot. Writes docs/benchmarks/arm64.md.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
ROOT=${NETCUT_ARM64_ROOT:-/var/tmp/netcut-arm64-root}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
RUNTIMES=${NETCUT_ARM64_RUNTIMES:-onnxruntime litert openvino}
WORK=$ROOT/opt/check
PAGE=docs/benchmarks/arm64.md
START=$(date +%s)

if [ "$(id -u)" != 0 ]; then
    echo "error: the arm64 check needs root (debootstrap, chroot, mounts)"; echo "fix: sudo make arm64-check"; exit 2
fi
WHEEL=$(ls dist/netcut_agent-*-py3-none-any.whl 2>/dev/null | head -1 || true)
if [ -z "$WHEEL" ]; then echo "error: no agent wheel in dist/"; echo "fix: make dist"; exit 2; fi
for tool in debootstrap qemu-aarch64-static update-binfmts; do
    command -v "$tool" >/dev/null || NEED=1
done
if [ -n "${NEED:-}" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap qemu-user-static \
        binfmt-support >/dev/null
fi
[ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64

echo "== arm64 Debian bookworm root in $ROOT"
if [ ! -f "$ROOT/.bootstrapped" ]; then
    # first stage here (download and unpack), second inside the root (its own binaries, emulated)
    if [ ! -x "$ROOT/debootstrap/debootstrap" ]; then
        rm -rf "$ROOT"
        debootstrap --foreign --arch=arm64 --variant=minbase --include=python3,python3-venv bookworm "$ROOT" \
            "$MIRROR" > /tmp/netcut-arm64-debootstrap.log
    fi
    chroot "$ROOT" /debootstrap/debootstrap --second-stage >> /tmp/netcut-arm64-debootstrap.log
    touch "$ROOT/.bootstrapped"
fi
rm -rf "$WORK" && mkdir -p "$WORK"

echo "== models and wheels (on this machine)"
.venv/bin/python tools/arm64_models.py "$WORK"
cp "$WHEEL" "$WORK/"
for rt in $RUNTIMES; do
    # the runtime's wheels for aarch64 Linux, CPython 3.11, glibc up to 2.36, at the project's pinned versions
    .venv/bin/pip download --quiet --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
        --abi abi3 --abi none --platform manylinux_2_36_aarch64 --platform manylinux_2_35_aarch64 \
        --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux_2_17_aarch64 \
        --platform manylinux2014_aarch64 -c constraints.txt -d "$WORK/wheels-$rt" "$WHEEL[$rt]" 2>&1 \
        | grep -v "is ignored" || true
done

# A Raspberry Pi 4's /proc/cpuinfo (64-bit kernel: no model name; the board in its Model line)
{
    for i in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
        printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n'
        printf 'CPU revision\t: 3\n\n'
    done
    printf 'Revision\t: d03114\nSerial\t\t: 10000000a1b2c3d4\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n'
} > "$WORK/cpuinfo"

cat > "$WORK/check.sh" <<'INNER'
#!/bin/bash
# Inside the arm64 root: one clean venv per runtime, installed from the copied wheels alone.
cd /opt/check
record() { python3 -c 'import json,sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' "$@" \
    >> results.jsonl; }
for rt in $RUNTIMES; do
    venv=/opt/venv-$rt
    rm -rf "$venv"
    t0=$(date +%s)
    python3 -m venv "$venv"
    if "$venv/bin/pip" install --quiet --no-index --find-links "wheels-$rt" "$(ls netcut_agent-*.whl)[$rt]" \
        > "install-$rt.log" 2>&1; then
        record runtime "$rt" step install ok yes seconds "$(( $(date +%s) - t0 ))" \
            detail "$("$venv/bin/pip" list --format=freeze 2>/dev/null | tr '\n' ' ')"
    else
        record runtime "$rt" step install ok no detail "$(tail -3 "install-$rt.log" | tr '\n' ' ')"
        continue
    fi
    "$venv/bin/netcut-agent" device --json > "device-$rt.json" 2> "device-$rt.err"
    record runtime "$rt" step device ok "$([ $? = 0 ] && echo yes || echo no)" detail "$(cat "device-$rt.json")"
    case $rt in
        onnxruntime) models="tiny.onnx" ;;
        litert) models="tiny.tflite" ;;
        openvino) models="tiny.onnx tiny.xml" ;;
    esac
    for model in $models; do
        t0=$(date +%s)
        if "$venv/bin/netcut-agent" measure "$model" --runtime "$rt" --threads 1 --repeats 5 --warmup 1 --json \
            > "measure-$rt-$model.json" 2> "measure-$rt-$model.err"; then
            record runtime "$rt" step "measure $model" ok yes seconds "$(( $(date +%s) - t0 ))" \
                detail "$(python3 /opt/check/summary.py "measure-$rt-$model.json")"
        else
            record runtime "$rt" step "measure $model" ok no detail "$(tail -3 "measure-$rt-$model.err" | tr '\n' ' ')"
        fi
    done
    # serve: health without a token, a stranger refused, a measurement with the token, then still serving
    "$venv/bin/netcut-agent" serve --port 0 --threads 1 > "serve-$rt.out" 2> "serve-$rt.err" &
    pid=$!
    for _ in $(seq 1 240); do grep -q "^runtimes:" "serve-$rt.out" 2>/dev/null && break; sleep 1; done
    model=${models%% *}
    "$venv/bin/python" - "$rt" "$model" > "serve-$rt.json" 2>&1 <<'PY'
import json, sys, urllib.error, urllib.request
rt, model = sys.argv[1], sys.argv[2]
lines = open(f"serve-{rt}.out").read().splitlines()
url = lines[0].split("serving on ")[1].split()[0]
token = next(line.split("token: ")[1] for line in lines if line.startswith("token: "))
def call(path, token=None, body=None):
    request = urllib.request.Request(url + path, data=body, method="POST" if body is not None else "GET")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
fmt = "onnx" if model.endswith(".onnx") else "tflite"
health, stranger = call("/v1/health")[0], call("/v1/device")[0]
status, measured = call(f"/v1/measure?format={fmt}&runtime={rt}&repeats=5&warmup=1", token, open(model, "rb").read())
print(json.dumps({"banner": lines[0], "runtimes_line": next((l for l in lines if l.startswith("runtimes:")), ""),
                  "health": health, "without_token": stranger, "measure": status,
                  "p50_ms": measured.get("p50_ms"), "after": call("/v1/health")[0]}))
PY
    ok=$(python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print("yes" if (d["health"], d["without_token"], d["measure"], d["after"]) == (200, 401, 200, 200) else "no")' "serve-$rt.json" 2>/dev/null || echo no)
    record runtime "$rt" step serve ok "$ok" detail "$(tail -1 "serve-$rt.json")"
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
done
exit 0  # what failed is in results.jsonl
INNER
chmod +x "$WORK/check.sh"
cat > "$WORK/summary.py" <<'PY'
"""One line of what `netcut-agent measure --json` found: p50 (emulated), peak memory, the device it names."""
import json, sys
d = json.load(open(sys.argv[1]))
r = next(iter(d["models"].values()))
peak = r["memory"]["peak_bytes"] / 1e6 if r.get("memory") else None
print(f"p50 {r['p50']:.2f} ms emulated, {r['n']} runs, peak {peak:.1f} MB; device: {d['environment']['cpu']}"
      if peak is not None else f"p50 {r['p50']:.2f} ms emulated; device: {d['environment']['cpu']}")
PY

echo "== inside the arm64 root (emulated): install, device, measure, serve per runtime"
mounted=()
cleanup() { for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done; }
trap cleanup EXIT
mount -t proc proc "$ROOT/proc" && mounted+=("$ROOT/proc")
mount -t sysfs sysfs "$ROOT/sys" && mounted+=("$ROOT/sys")
mount --bind /dev "$ROOT/dev" && mounted+=("$ROOT/dev")
mount -t tmpfs tmpfs "$ROOT/dev/shm" && mounted+=("$ROOT/dev/shm")
mount --bind "$WORK/cpuinfo" "$ROOT/proc/cpuinfo" && mounted+=("$ROOT/proc/cpuinfo")
chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root RUNTIMES="$RUNTIMES" /opt/check/check.sh
umount "$ROOT/proc/cpuinfo"
# what a runtime does with the host's (x86) cpuinfo under emulation, as `device` reports it
for rt in $RUNTIMES; do
    out=$(chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root "/opt/venv-$rt/bin/netcut-agent" device \
          2>&1 | grep " $rt" | sed 's/^ *//' || true)
    python3 -c 'import json,sys; print(json.dumps({"runtime": sys.argv[1], "step": "device, host cpuinfo",
        "ok": "yes" if sys.argv[2].startswith("ok") else "no", "detail": sys.argv[2]}))' "$rt" "$out" \
        >> "$WORK/results.jsonl"
done
cleanup
trap - EXIT

echo "== writing $PAGE"
.venv/bin/python - "$WORK" "$PAGE" "$(( $(date +%s) - START ))" "$ROOT" <<'PY'
import json, platform, subprocess, sys, time
from pathlib import Path
work, page, seconds, root = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
rows = [json.loads(line) for line in (work / "results.jsonl").read_text().splitlines() if line.strip()]
os_release = dict(line.split("=", 1) for line in (root / "etc/os-release").read_text().splitlines() if "=" in line)
glibc = subprocess.run(["chroot", str(root), "/usr/bin/ldd", "--version"], capture_output=True, text=True).stdout
python = subprocess.run(["chroot", str(root), "/usr/bin/python3", "--version"], capture_output=True,
                        text=True).stdout.strip()
host_cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
lines = ["# The agent on 64-bit ARM (emulated)", "",
         f"Run {time.strftime('%Y-%m-%d')} by `sudo make arm64-check` (`tools/arm64_check.sh`), {seconds // 60} min "
         f"{seconds % 60} s, on {host_cpu} ({platform.machine()}) with qemu user-mode emulation. The root: "
         f"{os_release.get('PRETTY_NAME', '?').strip(chr(34))}, arm64, {python}, glibc "
         f"{glibc.splitlines()[0].split()[-1] if glibc else '?'}. Each runtime in a clean venv, installed with "
         "`pip install --no-index --find-links WHEELS 'netcut_agent-*.whl[RUNTIME]'` from wheels downloaded on the "
         "host for aarch64 (no index inside). A Raspberry Pi 4's `/proc/cpuinfo` is bound over the host's there. "
         "Timings under emulation mean nothing; this page says what works. The last rows run `netcut-agent "
         "device` once more with the host's (x86) cpuinfo, unbound: what a runtime does without an arm64 one.", "",
         "| runtime | step | works | detail |", "|---|---|---|---|"]
for row in rows:
    detail = row.get("detail", "").replace("|", "\\|").replace("\n", " ")
    if row["step"] == "device":
        try:
            d = json.loads(row["detail"])
            detail = (f"device: {d['device']}; " + "; ".join(
                f"{r['name']} {'ok ' + ' '.join(f'{k} {v}' for k, v in r['versions'].items() if k != 'ort_thread_pool') if r['available'] else r['problem']}"
                for r in d["runtimes"]))
        except (ValueError, KeyError):
            pass
    if row["step"] == "serve":
        try:
            d = json.loads(row["detail"])
            detail = (f"health {d['health']}, no token {d['without_token']}, measure with token {d['measure']} "
                      f"(p50 {d['p50_ms']:.2f} ms emulated), health after {d['after']}; banner: "
                      f"`{d['banner']}`, `{d['runtimes_line']}`")
        except (ValueError, KeyError, TypeError):
            pass
    if row["step"] == "install" and row.get("ok") == "yes":
        detail = f"{row.get('seconds', '?')} s; " + ", ".join(
            p for p in row.get("detail", "").split() if p.split("==")[0].lower() in
            ("netcut-agent", "numpy", "onnxruntime", "ai-edge-litert", "openvino"))
    lines.append(f"| {row['runtime']} | {row['step']} | {row['ok']} | {detail} |")
page.write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
