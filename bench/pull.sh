#!/usr/bin/env bash
# Pull benchmarks (issues 3 and 14), from one loopback registry (Debian's
# docker-registry), in one run. Each row alternates the commands it compares, run by
# run, and reports the median of RUNS (default 5):
#   1. imgfs pull / skopeo copy docker://… oci:DIR of the minbase image (1 layer, ~47 MB
#      gzip / 128 MB tar) — goal ≤ 1.0× — with peak RSS (goal ≤ 64 MB);
#   2. the same image copied as zstd:chunked (skopeo copy --dest-compress-format) — ≤ 1.0×;
#   3. a 5-layer image with 3 downloads at once vs one at a time;
#   4. the 5-layer image through bench/wan_front.py (100 Mbit/s shared by every
#      connection, 40 ms per request): imgfs pull / skopeo copy — goal ≤ 1.0×;
#   5. CPU seconds per MB of blob for each imgfs pipeline stage (IMGFS_STAGE_CPU), the
#      pull's timeline (when each stage ended, the tree, the commit), and
#      skopeo's and imgfs's whole-process CPU per MB;
#   6. the time of a pull of an image already local (nothing fetched past the manifest).
# BASELINE=path/to/older/imgfs adds that binary to rows 1, 2 and 4 (before/after).
# PULL_ROWS=loopback runs rows 1, 2 and 5 only.
# Usage: bench/pull.sh [path/to/imgfs]   (inputs from bench/make_minbase.sh)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
IMGFS=$(readlink -f "${1:-$HERE/../build/imgfs}")
BASELINE=${BASELINE:+$(readlink -f "$BASELINE")}
B=${BENCH_DIR:-/var/tmp/imgfs-bench}
RUNS=${RUNS:-5}
bash "$HERE/make_minbase.sh" >/dev/null
W=$(mktemp -d /var/tmp/imgfs-bench-pull.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(free_port)
cat >"$W/reg.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $W/reg}}
http: {addr: 127.0.0.1:$P}
YML
docker-registry serve "$W/reg.yml" >"$W/reg.log" 2>&1 &
PIDS+=($!)
until curl -s -o /dev/null "http://127.0.0.1:$P/v2/"; do sleep 0.1; done
REG=127.0.0.1:$P
skopeo copy -q --dest-tls-verify=false "oci:$B/minbase-oci:latest" "docker://$REG/bench/minbase:latest"
# zstd:chunked: recompressed once into a layout (skopeo only recompresses a blob it
# writes, not one the registry already holds).
if [[ ! -d $B/minbase-zstd-oci ]]; then
  skopeo copy -q --dest-compress --dest-compress-format zstd:chunked \
    "oci:$B/minbase-oci:latest" "oci:$B/minbase-zstd-oci:latest"
fi
skopeo copy -q --dest-tls-verify=false "oci:$B/minbase-zstd-oci:latest" "docker://$REG/bench/minbase-zstd:latest"

# A 5-layer image: minbase split by top-level directory into five stacked layers.
if [[ ! -d $B/five-oci ]]; then
  umoci init --layout "$B/five-oci" && umoci new --image "$B/five-oci:l0"
  prev=l0
  mkdir -p "$W/split" && tar -C "$W/split" -xf "$B/minbase.tar"
  i=1
  for part in usr/lib usr/share usr/bin "usr/sbin usr/include usr/libexec usr/local usr/games usr/src" "etc var bin sbin lib lib64 root home opt srv mnt media run tmp boot"; do
    umoci unpack --image "$B/five-oci:$prev" "$W/b$i" >/dev/null
    for p in $part; do
      [[ -e $W/split/$p ]] || continue
      mkdir -p "$W/b$i/rootfs/$(dirname "$p")" && cp -a "$W/split/$p" "$W/b$i/rootfs/$p"
    done
    umoci repack --image "$B/five-oci:l$i" "$W/b$i" >/dev/null
    rm -rf "$W/b$i"
    prev=l$i
    i=$((i + 1))
  done
  umoci tag --image "$B/five-oci:l5" latest
  rm -rf "$W/split"
fi
skopeo copy -q --dest-tls-verify=false "oci:$B/five-oci:latest" "docker://$REG/bench/five:latest"
WAN=$(free_port)
python3 "$HERE/wan_front.py" "$WAN" "$P" 100 40 &
PIDS+=($!)
until curl -s -o /dev/null "http://127.0.0.1:$WAN/v2/"; do sleep 0.1; done

python3 -u - "$W" "$REG" "127.0.0.1:$WAN" "$RUNS" "$IMGFS" "$BASELINE" <<'PY'
import os, shutil, statistics, subprocess, sys, time
W, REG, WAN, RUNS, IMGFS, BASE = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]

def blob_mb(reg, repo):
    """Compressed MB of an image's layers, from its manifest."""
    import json, urllib.request
    req = urllib.request.Request(f'http://{reg}/v2/{repo}/manifests/latest', headers={
        'Accept': 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'})
    m = json.load(urllib.request.urlopen(req))
    return sum(l['size'] for l in m['layers']) / 1e6

def run(cmd, env=None):
    """Wall s, peak RSS MB, CPU s (user+sys), stderr. The wall time is taken here (time's
    %e has 10 ms steps); it includes starting /usr/bin/time, the same for every command."""
    t0 = time.monotonic()
    r = subprocess.run(['/usr/bin/time', '-f', 'TIME %e %M %U %S'] + cmd, capture_output=True, text=True,
                       env=dict(os.environ, **(env or {})))
    wall = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit(f'failed: {" ".join(cmd)}\n{r.stderr}')
    t = [l for l in r.stderr.splitlines() if l.startswith('TIME ')][-1].split()
    return wall, int(t[2]) / 1024, float(t[3]) + float(t[4]), r.stderr

def clean(p):
    shutil.rmtree(p, ignore_errors=True)

def skopeo(reg, repo):
    clean(f'{W}/sk')
    return run(['skopeo', 'copy', '-q', '--src-tls-verify=false', f'docker://{reg}/{repo}:latest', f'oci:{W}/sk:latest'])

def imgfs(binary, reg, repo, extra=(), env=None):
    clean(f'{W}/s')
    return run([binary, '-g', f'{W}/s', 'pull', '-q', *extra, f'{reg}/{repo}:latest'], env)

def row(title, cmds):
    """Runs each (name, fn) RUNS times, alternating; prints medians; returns them."""
    res = {n: [] for n, _ in cmds}
    for _ in range(RUNS):
        for n, fn in cmds:
            res[n].append(fn())
    print(f'\n{title}')
    med = {}
    for n, _ in cmds:
        w = statistics.median(x[0] for x in res[n])
        rss = max(x[1] for x in res[n])
        cpu = statistics.median(x[2] for x in res[n])
        med[n] = (w, rss, cpu)
        print(f'  {n:44s} {w * 1000:7.0f} ms (runs {min(x[0] for x in res[n]) * 1000:.0f}–'
              f'{max(x[0] for x in res[n]) * 1000:.0f})  CPU {cpu:5.2f} s  peak RSS {rss:5.1f} MB')
    return med

for repo, label in (('bench/minbase', 'gzip layer'), ('bench/minbase-zstd', 'zstd:chunked layer')):
    cmds = [('skopeo copy docker:// oci:', lambda: skopeo(REG, repo)),
            ('imgfs pull', lambda: imgfs(IMGFS, REG, repo))]
    if BASE:
        cmds.append(('imgfs pull (baseline)', lambda: imgfs(BASE, REG, repo)))
    mb = blob_mb(REG, repo)
    m = row(f'minbase, {label} ({mb:.1f} MB), loopback registry, median of {RUNS}:', cmds)
    sk, im = m['skopeo copy docker:// oci:'], m['imgfs pull']
    print(f'  imgfs pull / skopeo copy: {im[0] / sk[0]:.2f}x' +
          (f'   (baseline: {m["imgfs pull (baseline)"][0] / sk[0]:.2f}x)' if BASE else ''))
    print(f'  CPU per MB of blob: skopeo {sk[2] / mb * 1000:.1f} ms, imgfs {im[2] / mb * 1000:.1f} ms')
    # CPU per stage, from the pipeline's own per-thread accounting (one more run).
    # And the timeline: when each stage ended and each step of the end was done, in ms
    # from the process's start (the tail after the last byte is what a pull adds).
    stages, marks = {}, {}
    for _ in range(3):
        _, _, _, err = imgfs(IMGFS, REG, repo, env={'IMGFS_STAGE_CPU': '1'})
        for l in err.splitlines():
            f = l.split()
            if not f:
                continue
            if f[0] == 'imgfs-stage-cpu':
                stages.setdefault(f[1], []).append(float(f[2]))
                if len(f) > 3:
                    marks.setdefault(f[1] + ' end', []).append(float(f[3]))
            elif f[0] == 'imgfs-stage-time':
                marks.setdefault(f[1], []).append(float(f[2]))
    print('  imgfs CPU per MB of blob, by stage (median of 3): ' + ', '.join(
        f'{s} {statistics.median(v) / mb * 1000:.1f} ms' for s, v in stages.items()))
    print('  imgfs timeline, ms from start (median of 3): ' + ', '.join(
        f'{k} {statistics.median(v):.0f}' for k, v in sorted(marks.items(), key=lambda kv: statistics.median(kv[1]))))

if os.environ.get('PULL_ROWS', 'all') == 'loopback':
    sys.exit(0)  # the minbase rows only (more runs in the same time)

m = row(f'5-layer image ({blob_mb(REG, "bench/five"):.1f} MB), loopback, median of {RUNS}:', [
    ('imgfs pull, 1 download at a time', lambda: imgfs(IMGFS, REG, 'bench/five', ['--max-concurrent-downloads', '1'])),
    ('imgfs pull, 3 downloads at once', lambda: imgfs(IMGFS, REG, 'bench/five'))])
one, three = m['imgfs pull, 1 download at a time'][0], m['imgfs pull, 3 downloads at once'][0]
print(f'  3 at once: {one / three:.2f}x faster than one at a time')

cmds = [('skopeo copy docker:// oci:', lambda: skopeo(WAN, 'bench/five')),
        ('imgfs pull', lambda: imgfs(IMGFS, WAN, 'bench/five')),
        ('imgfs pull, 1 download at a time', lambda: imgfs(IMGFS, WAN, 'bench/five', ['--max-concurrent-downloads', '1']))]
if BASE:
    cmds.append(('imgfs pull (baseline)', lambda: imgfs(BASE, WAN, 'bench/five')))
m = row(f'5-layer image through the WAN front (100 Mbit/s shared, 40 ms per request), median of {RUNS}:', cmds)
print(f'  imgfs pull / skopeo copy: {m["imgfs pull"][0] / m["skopeo copy docker:// oci:"][0]:.2f}x' +
      (f'   (baseline: {m["imgfs pull (baseline)"][0] / m["skopeo copy docker:// oci:"][0]:.2f}x)' if BASE else ''))

# An image already local: the manifest is fetched, its config digest is in the store.
imgfs(IMGFS, REG, 'bench/minbase')
t = []
for _ in range(max(RUNS, 5)):
    t.append(run([IMGFS, '-g', f'{W}/s', 'pull', '-q', f'{REG}/bench/minbase:latest'])[0])
print(f'\npull of an image already local: {statistics.median(t) * 1000:.0f} ms (median of {len(t)})')
PY
