#!/usr/bin/env bash
# A real Slurm, here: `pyintro slurm EXPERIMENT ... --shards 4 --submit` under a one-node
# slurmctld/slurmd, checked against an unsharded run of the same command, row for row, with one
# array task cancelled mid-run and resubmitted (nothing lost, nothing duplicated).
#
#   bash tools/slurm_check.sh [--existing] [EXPERIMENT [ITS OPTIONS...]]
#
# Without --existing (as root, e.g. in a container): installs Debian's slurm-wlm and munge if
# missing, writes a slurm.conf for one node, localhost, with 2 CPUs in a temporary folder, starts
# munged, slurmctld and slurmd there as its own processes and stops them at the end.
# With --existing: uses the Slurm that `sinfo` answers (a cluster, or tests/test_slurm.py).
#
# EXPERIMENT: detect once `pyintro merge DIR` can merge its shards, else thoughts (which merges
# with its own --merge). Default options are sized for a few minutes on 2 cores; the cancelled
# task must have more than one chunk of work (thoughts: 2 pairs per shard) so that its resume
# keeps rows.
#
# Environment: PYINTRO_SLURM_WORK (a work folder every node sees; default: a new temporary
# folder, kept on failure), PYINTRO_SLURM_SHARDS (4), PYINTRO_SLURM_TIMEOUT (seconds per wait,
# 1200), PYINTRO_SLURM_SBATCH_ARGS (extra #SBATCH options, e.g. --account=abc on a cluster),
# PYINTRO_SLURM_KEEP=1 (leave the daemons running after a pass, to try `pyintro slurm` by hand
# or run the slow tests; the script prints how to use and stop them).
set -euo pipefail

existing=0
if [[ "${1:-}" == "--existing" ]]; then existing=1; shift; fi
shards=${PYINTRO_SLURM_SHARDS:-4}
timeout=${PYINTRO_SLURM_TIMEOUT:-1200}
command -v pyintro >/dev/null || { echo "slurm_check: pyintro is not on PATH (activate its environment)" >&2; exit 2; }
PY=$(dirname "$(command -v pyintro)")/python
[[ -x "$PY" ]] || PY=python3

if (( $# )); then
    experiment=$1; shift; options=("$@")
else
    experiment=$("$PY" -c 'from pyintro.cli.slurm import merge_mode; print("detect" if merge_mode("detect") else "thoughts")')
    options=()
fi
if (( ${#options[@]} == 0 )); then
    case $experiment in
        thoughts|prefill) options=(--quick --pairs $((2 * shards)) --layers 10,20) ;;
        detect) options=(--quick --words Dust,Satellites,Trumpets,Origami --layers 15 --strengths 4,16) ;;
        control) options=(--quick --pairs $((2 * shards)) --layers 10,20) ;;
        *) echo "slurm_check: give the options of $experiment" >&2; exit 2 ;;
    esac
fi

t0=$(date +%s)
say() { printf '[slurm_check %4ds] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }
fail() { say "FAILED: $*"; exit 1; }

work=${PYINTRO_SLURM_WORK:-}
if [[ -z "$work" ]]; then work=$(mktemp -d /tmp/pyintro-slurm-check.XXXXXX) && chmod 755 "$work"; fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
daemons="$work/daemons"
started=()
jobs=()  # this check's job ids, cancelled if it fails

cleanup() {
    local rc=$?
    (( rc != 0 && ${#jobs[@]} )) && scancel "${jobs[@]}" 2>/dev/null
    if (( rc == 0 && ${#started[@]} )) && [[ "${PYINTRO_SLURM_KEEP:-0}" == 1 ]]; then
        echo "slurm_check: Slurm left running: export SLURM_CONF=$SLURM_CONF"
        echo "slurm_check: stop it with: kill \$(cat $daemons/slurmd.pid $daemons/slurmctld.pid $daemons/munged.pid)"
        started=()
        [[ -n "${PYINTRO_SLURM_WORK:-}" ]] || { echo "slurm_check: work folder kept: $work"; PYINTRO_SLURM_WORK=$work; }
    fi
    if (( ${#started[@]} )); then
        squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null || true
        for name in slurmd slurmctld munged; do  # only the processes this script started, by their pid files
            local pidfile="$daemons/$name.pid"
            [[ -s "$pidfile" ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
        done
        for _ in $(seq 50); do
            local alive=0
            for name in slurmd slurmctld munged; do
                [[ -s "$daemons/$name.pid" ]] && kill -0 "$(cat "$daemons/$name.pid")" 2>/dev/null && alive=1
            done
            (( alive )) || break
            sleep 0.2
        done
    fi
    if (( rc == 0 )) && [[ -z "${PYINTRO_SLURM_WORK:-}" ]]; then
        rm -rf "$work"
    elif (( rc != 0 )); then
        echo "slurm_check: kept $work (daemon logs in $daemons/log, job logs in $work/sharded/logs)" >&2
        for f in "$daemons"/log/*.log "$work"/sharded/logs/*; do
            [[ -s "$f" ]] && { echo "== $f (last lines)" >&2; tail -n 8 "$f" >&2; }
        done
    fi
    exit $rc
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_slurm() {
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        [[ $(id -u) == 0 ]] || fail "Slurm is not installed and this is not root: apt-get install slurm-wlm munge"
        say "installing slurm-wlm and munge (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
    fi
    mkdir -p "$daemons"/{state,spool,log,munge}
    chmod 755 "$daemons" "$daemons/munge"
    head -c 1024 /dev/urandom > "$daemons/munge/munge.key"
    chmod 400 "$daemons/munge/munge.key"
    local ctld_port slurmd_port
    ctld_port=$(free_port); slurmd_port=$(free_port)
    while [[ "$slurmd_port" == "$ctld_port" ]]; do slurmd_port=$(free_port); done
    cat > "$daemons/slurm.conf" <<EOF
# One node, this machine, 2 CPUs: written by tools/slurm_check.sh
ClusterName=pyintro
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$daemons/munge/munge.sock
StateSaveLocation=$daemons/state
SlurmdSpoolDir=$daemons/spool
SlurmctldPidFile=$daemons/slurmctld.pid
SlurmdPidFile=$daemons/slurmd.pid
SlurmctldLogFile=$daemons/log/slurmctld.log
SlurmdLogFile=$daemons/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$daemons/slurm.conf"
    started=(munged)
    # --force: munged refuses a socket under a folder that is not executable by all (a
    # PYINTRO_SLURM_WORK under a private home, say); this turns that into a warning.
    munged --force --socket="$daemons/munge/munge.sock" --key-file="$daemons/munge/munge.key" \
        --pid-file="$daemons/munged.pid" --log-file="$daemons/log/munged.log" --seed-file="$daemons/munge/seed" \
        || fail "munged did not start"
    started+=(slurmctld)
    slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start"
    started+=(slurmd)
    slurmd -f "$SLURM_CONF" -N localhost || fail "slurmd did not start"
    for _ in $(seq 120); do
        [[ "$(sinfo -h -n localhost -o %T 2>/dev/null)" == idle ]] && break
        sleep 0.5
    done
    [[ "$(sinfo -h -n localhost -o %T 2>/dev/null)" == idle ]] || fail "the node did not come up idle"
    say "Slurm up: $(sinfo -h -o '%P %D node(s) %c CPUs %T')"
}

# The complete rows of a results.csv (0 if it does not exist yet).
rows() { "$PY" -c 'import csv, sys, os
p = sys.argv[1]
print(max(0, len(list(csv.reader(open(p, newline="")))) - 1) if os.path.exists(p) else 0)' "$1"; }

state() { scontrol -o show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -n 1 | cut -d= -f2; }
reason() { scontrol -o show job "$1" 2>/dev/null | grep -o 'Reason=[^ ]*' | head -n 1 | cut -d= -f2; }

# Waits until `squeue -j IDS` lists nothing.
wait_gone() {
    local deadline=$(( $(date +%s) + timeout ))
    while [[ -n "$(squeue -h -j "$1" -o %i 2>/dev/null)" ]]; do
        (( $(date +%s) < deadline )) || fail "jobs $1 still queued after ${timeout}s"
        sleep 1
    done
}

if (( existing )); then
    sinfo -h >/dev/null 2>&1 || fail "--existing: sinfo does not answer"
    say "using the running Slurm: $(sinfo -h -o '%P %D node(s) %c CPUs %T' | head -n 1)"
else
    start_slurm
fi

out="$work/sharded"
export PYINTRO_CACHE="$work/cache-shards"  # a cold concept cache, filled by tasks running at once
say "pyintro slurm $experiment ${options[*]} --shards $shards --submit"
t_submit=$(date +%s)
sbatch_args=()
for a in ${PYINTRO_SLURM_SBATCH_ARGS:-}; do sbatch_args+=(--sbatch-arg="$a"); done
pyintro slurm "$experiment" "${options[@]}" --shards "$shards" --cpus-per-task 1 --time 0:30:00 \
    "${sbatch_args[@]}" --out "$out" --submit
read -r array merge < <("$PY" -c 'import json, sys; j = json.load(open(sys.argv[1])); print(j["array"], j["merge"])' \
    "$out/slurm/jobs.json")
jobs+=("$array" "$merge")
say "array job $array, merge job $merge"

# Waits until task $1 of the array runs and has flushed rows, but has not finished.
wait_mid_run() {
    local k=$1 st n deadline=$(( $(date +%s) + timeout ))
    while :; do
        st=$(state "${array}_$k")
        n=$(rows "$out/shards/$k/results.csv")
        if [[ "$st" == RUNNING ]] && (( n > 0 )); then return; fi
        [[ -e "$out/slurm/done/$k" || "$st" == COMPLETED ]] && fail "task $k finished before it could be stopped mid-run; give it more work"
        case $st in FAILED|CANCELLED|TIMEOUT|OUT_OF_MEMORY|NODE_FAIL|PREEMPTED|BOOT_FAIL) fail "task $k ended $st" ;; esac
        (( $(date +%s) < deadline )) || fail "task $k did not start writing rows within ${timeout}s (state ${st:-?})"
        sleep 0.2
    done
}

# Requeue the last task but one mid-run, as a preemption would: it must resume by itself.
kq=0
if (( shards > 1 )); then
    kq=$(( shards - 1 ))
    wait_mid_run "$kq"
    scontrol requeue "${array}_$kq"
    say "requeued task ${array}_$kq mid-run with $(rows "$out/shards/$kq/results.csv") rows flushed"
fi

# Cancel the last task mid-run: it is resubmitted by hand below.
k=$shards
wait_mid_run "$k"
scancel "${array}_$k"
t_cancel=$(date +%s)
wait_gone "${array}_$k"
n_cancel=$(rows "$out/shards/$k/results.csv")
[[ "$(state "${array}_$k")" == CANCELLED ]] || fail "task $k is $(state "${array}_$k"), not CANCELLED"
[[ -e "$out/slurm/done/$k" ]] && fail "task $k was cancelled but is marked done"
say "cancelled task ${array}_$k mid-run with $n_cancel rows flushed"

sleep 2
[[ "$(state "$merge")" == PENDING ]] || fail "merge job $merge is $(state "$merge") after a task was cancelled"
say "merge job $merge waits ($(reason "$merge")) and can never run: cancelling it"
scancel "$merge"

# Resubmit the cancelled shard while the rest of the first array may still run (the requeued
# task waits out Slurm's requeue delay): the new merge waits for both (docs/cluster.md).
array2=$(sbatch --parsable --array="$k" "$out/slurm/array.sh" | cut -d';' -f1)
merge2=$(sbatch --parsable --dependency=afterok:"$array2",afterany:"$array" "$out/slurm/merge.sh" | cut -d';' -f1)
jobs+=("$array2" "$merge2")
say "resubmitted task $k as job $array2, merge as job $merge2 (afterok:$array2,afterany:$array)"
wait_gone "$array,$array2,$merge2"
[[ "$(state "$merge2")" == COMPLETED ]] || fail "merge job $merge2 ended $(state "$merge2")"
t_merged=$(date +%s)
if (( kq )); then
    [[ -e "$out/slurm/done/$kq" ]] || fail "the requeued task $kq did not finish"
    grep -q "^pyintro slurm: shard $kq/$shards, job ${array}_$kq on .*, restart 1," "$out/logs/shard-$kq.out" \
        || fail "logs/shard-$kq.out shows no restart of the requeued task"
    say "the requeued task $kq restarted by itself and finished"
fi
starts=$(grep -c "^pyintro slurm: shard $k/$shards, job" "$out/logs/shard-$k.out" || true)
(( starts == 2 )) || fail "logs/shard-$k.out shows $starts starts of task $k, expected 2 (the cancelled run and the resubmitted one)"
say "merged: $(tail -n 1 "$out/logs/merge.out")"

say "the same command unsharded: pyintro $experiment ${options[*]} --threads 1"
t_ref=$(date +%s)
PYINTRO_CACHE="$work/cache-reference" pyintro "$experiment" "${options[@]}" --threads 1 --out "$work/reference" \
    > "$work/reference.log" 2>&1 || { tail -n 5 "$work/reference.log"; fail "the unsharded run failed"; }
t_done=$(date +%s)

"$PY" - "$work/reference/results.csv" "$out/results.csv" "$out/shards" "$shards" <<'EOF'
import collections, csv, sys
from pathlib import Path

def rows(path):
    with open(path, newline="") as f:
        records = list(csv.reader(f))
    return records[0], [tuple(r) for r in records[1:]]

head, ref = rows(sys.argv[1])
head_merged, merged = rows(sys.argv[2])
shard_rows = []
for k in range(1, int(sys.argv[4]) + 1):
    h, r = rows(Path(sys.argv[3]) / str(k) / "results.csv")
    assert h == head, f"shard {k} has other columns than the unsharded run"
    shard_rows += r
assert head_merged == head, "the merged results.csv has other columns than the unsharded run"
count = collections.Counter
dups = [r for r, n in count(shard_rows).items() if n > 1]
assert not dups, f"{len(dups)} rows appear twice across the shard files, e.g. {dups[0][:6]}"
for name, got in (("merged", merged), ("shard files together", shard_rows)):
    missing, extra = count(ref) - count(got), count(got) - count(ref)
    assert not missing and not extra, (f"{name}: {sum(missing.values())} rows of the unsharded run missing, "
                                       f"{sum(extra.values())} rows not in it, e.g. {next(iter(missing or extra))[:6]}")
print(f"rows: unsharded {len(ref)}, merged {len(merged)}, shard files {len(shard_rows)}: equal row for row")
EOF
say "PASSED: $shards shards of pyintro $experiment under slurmctld, one requeued and one cancelled mid-run, both resumed; merged = unsharded"
say "times: submit to merged $(( t_merged - t_submit ))s (cancel at $(( t_cancel - t_submit ))s), unsharded run $(( t_done - t_ref ))s, total $(( t_done - t0 ))s"
