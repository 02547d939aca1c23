#!/usr/bin/env bash
# The standard work on the CPU under each RETROPROP_BLAS (unset = auto, off,
# the library by name), beside PyTorch on the same threads, in one run,
# interleaved round by round, with OpenBLAS held to its Haswell (AVX2)
# kernels (OPENBLAS_CORETYPE=Haswell, as set on AVX-512 machines whose
# older OpenBLAS builds fail on their AVX-512 kernels) and left to choose
# its own; then the medians (docs/performance.md, "Which GEMM auto runs").
# Each round also records the trials auto ran in a fresh process
# (examples/gemm_trials.rs), to see how often a choice changes.
#
#   dev/cpu_gemm_choice.sh > /tmp/choice.jsonl; dev/cpu_gemm_choice.sh --summary < /tmp/choice.jsonl
#
# Needs: target/release/retroprop and target/release/examples/gemm_trials
# (cargo build --release -p retroprop-cli; cargo build --release --example gemm_trials), libopenblas0,
# TORCH_PYTHON (default /work/venv/bin/python). ROUNDS (default 5), STEPS
# (default 20), CORETYPES (default "Haswell default"), TIMEOUTS (values of
# OPENBLAS_THREAD_TIMEOUT, default "-": unset, which the program sets to 4;
# "- 28" measures OpenBLAS's own as well), MAX_LOAD (unset: no wait). The summary gives each round's load average beside the medians.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS:-$root/../shared/peers}
py=${TORCH_PYTHON:-/work/venv/bin/python}
if [ "${1:-}" = --summary ]; then
  exec "$py" -c '
import json, statistics, sys
runs, trials, loads, by_round = {}, {}, [], {}
round_ = 0
for line in sys.stdin:
    r = json.loads(line)
    if "round" in r:
        round_ = r["round"]
        loads.append(float(r["load"].split()[0]))
    elif "samples_per_s" in r:
        key = (r.get("coretype", "-"), r.get("blas", "torch"), r["batch"])
        runs.setdefault(key, []).append((r["samples_per_s"], r.get("device", r.get("system"))))
        by_round[(round_,) + key] = r["samples_per_s"]
    elif "trial" in r:
        trials.setdefault((r["coretype"], r["trial"]), []).append(r["choice"])
print(f"rounds: {len(loads)}, one-minute load average at their starts: {min(loads)}-{max(loads)} (median {statistics.median(loads)})")
print()
print("| OpenBLAS kernels | RETROPROP_BLAS | batch | samples/s, median (range) | runs | device |")
print("| --- | --- | --- | --- | --- | --- |")
for (core, blas, batch), v in sorted(runs.items()):
    s = sorted(x for x, _ in v)
    devices = "; ".join(sorted(set(d for _, d in v)))
    print(f"| {core} | {blas} | {batch} | {statistics.median(s):,.0f} ({s[0]:,.0f}-{s[-1]:,.0f}) | {len(s)} | {devices} |")
print()
print("Ratios within each round, median (range): auto against the better of off and the library, and against PyTorch")
print()
print("| OpenBLAS kernels | batch | auto / better | auto / PyTorch |")
print("| --- | --- | --- | --- |")
cores = sorted({k[1] for k in by_round if k[1] != "-"})
batches = sorted({k[3] for k in by_round})
for core in cores:
    for batch in batches:
        better, torch = [], []
        for n in range(1, round_ + 1):
            get = lambda c, b: by_round.get((n, c, b, batch))
            auto, off, lib, pt = get(core, "auto"), get(core, "off"), get(core, "libopenblas.so.0"), get("-", "torch")
            if auto and off and lib:
                better.append(auto / max(off, lib))
            if auto and pt:
                torch.append(auto / pt)
        cell = lambda v: f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})" if v else "-"
        print(f"| {core} | {batch} | {cell(better)} | {cell(torch)} |")
print()
for (core, shape), v in sorted(trials.items()):
    print(f"trials, {core}, {shape}: {v}")
'
fi
bench="$root/target/release/retroprop"
trials="$root/target/release/examples/gemm_trials"
threads=$(nproc)
for round in $(seq "${ROUNDS:-5}"); do
  # On a machine shared with other work, wait (up to 10 minutes) for the
  # one-minute load average to fall below MAX_LOAD before each round.
  for _ in $(seq 60); do
    [ -z "${MAX_LOAD:-}" ] && break
    awk -v max="$MAX_LOAD" '{ exit !($1 < max) }' /proc/loadavg && break
    sleep 10
  done
  echo "{\"round\": $round, \"load\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
  for core in ${CORETYPES:-Haswell default}; do
    coreenv=(); [ "$core" = default ] || coreenv=(OPENBLAS_CORETYPE=$core)
    for timeout in ${TIMEOUTS:--}; do
      timeoutenv=(); [ "$timeout" = - ] || timeoutenv=(OPENBLAS_THREAD_TIMEOUT=$timeout)
      for blas in auto off libopenblas.so.0; do
        blasenv=(); [ "$blas" = auto ] || blasenv=(RETROPROP_BLAS=$blas)
        env -u OPENBLAS_CORETYPE -u RETROPROP_BLAS -u OPENBLAS_THREAD_TIMEOUT \
          "${coreenv[@]}" "${timeoutenv[@]}" "${blasenv[@]}" \
          "$bench" bench --devices cpu --batch 64,1024 --steps "${STEPS:-20}" --json |
          "$py" -c "import json,sys
for l in sys.stdin:
    r = json.loads(l); r.update(coretype='$core' + ('' if '$timeout' == '-' else ', timeout $timeout'), blas='$blas'); print(json.dumps(r))"
      done
    done
    # The trials as the program runs them (it sets OPENBLAS_THREAD_TIMEOUT=4).
    env -u OPENBLAS_CORETYPE -u RETROPROP_BLAS OPENBLAS_THREAD_TIMEOUT=4 "${coreenv[@]}" "$trials" |
      "$py" -c "import json,sys
for l in sys.stdin:
    if 'calls' in l:
        f = l.split()
        print(json.dumps({'coretype': '$core', 'trial': ' '.join(f[0:5]), 'choice': f[11] + ' ' + f[12].rstrip(',')}))"
  done
  "$py" "$peers/torch_ref/bench.py" --threads "$threads" --batches 64 1024 --steps 30
done
