#!/usr/bin/env bash
# Proves CI on a fresh Debian 12 machine: makes a clean Debian 12 root with
# debootstrap (Debian's own packages, nothing else), puts a fresh `git clone`
# of this repository in it (committed work only) with the GPT-2 data
# directory beside it read-only, chroots and runs
#   full:    CI=true bash .ci/run        (every package the tests use; no skips)
#   readme:  the README's apt-get install line, then the README's test
#            command (taken from README.md), which must pass and list what
#            it skipped.
# Prints the times and leaves the log in OUT (default /tmp/lms-fresh).
#
# Usage (root; needs debootstrap, network access to a Debian mirror):
#   tools/fresh_machine_check.sh [full|readme] [options]
#     --mirror URL     Debian mirror (default: the first deb.debian.org-style
#                      URI in /etc/apt/sources.list*, else http://deb.debian.org/debian)
#     --data DIR       the GPT-2 files directory, mounted read-only as
#                      ../shared/data beside the clone (default: ../shared/data
#                      beside this checkout; "none" for none)
#     --base DIR       keep the pristine debootstrap root in DIR and reuse it
#                      (copied for each run, never changed) (default /tmp/lms-fresh-base)
#     --out DIR        work directory: the root and the log (default /tmp/lms-fresh)
#     --keep           leave the root in OUT/root afterwards
#     --lock FILE      run the CPU-heavy part (build and tests) under `flock FILE`
#                      (the package downloads and installs run before, outside it)
# CPU-heavy: on a shared machine pass --lock /tmp/lms-heavy.lock.
set -euo pipefail
{ # read to the end before running: editing this file during a run cannot change the run
MODE=full
MIRROR=
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=$REPO/../shared/data
BASE=/tmp/lms-fresh-base
OUT=/tmp/lms-fresh
KEEP=0
LOCK=
SUITE=bookworm
while [ $# -gt 0 ]; do
    case $1 in
    full | readme) MODE=$1 ;;
    --mirror) MIRROR=$2; shift ;;
    --data) DATA=$2; shift ;;
    --base) BASE=$2; shift ;;
    --out) OUT=$2; shift ;;
    --keep) KEEP=1 ;;
    --lock) LOCK=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "fresh_machine_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
die() { echo "fresh_machine_check.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, mount, chroot)"
command -v debootstrap >/dev/null || die "debootstrap is not installed: apt-get install debootstrap"
git -C "$REPO" rev-parse HEAD >/dev/null 2>&1 || die "$REPO is not a git checkout"
if [ -z "$MIRROR" ]; then
    MIRROR=$(grep -hoE '(URIs:|deb) +https?://[^ ]*/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
        awk '{print $2}' | head -1 || true)
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
fi
MIRROR=${MIRROR%/}
SECURITY=${MIRROR%/debian}/debian-security
[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no)" ] &&
    echo "note: $REPO has uncommitted changes; the check uses the committed HEAD $(git -C "$REPO" rev-parse --short HEAD)"

ROOT=$OUT/root
LOG=$OUT/$MODE.log
mkdir -p "$OUT"
MOUNTS=()
cleanup() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount -R -l "${MOUNTS[i]}" 2>/dev/null || true
    done
    MOUNTS=()
    if [ $KEEP = 0 ] && [ -d "$ROOT" ]; then
        # only after every mount is gone: never delete through a bind mount
        if ! grep -q " $ROOT/" /proc/mounts; then rm -rf "$ROOT"; else echo "left $ROOT: still mounted" >&2; fi
    fi
}
trap cleanup EXIT
mnt() { # mnt DIR mount-args...: mounts on ROOT/DIR and remembers it
    local dir=$ROOT/$1
    shift
    mkdir -p "$dir"
    mount "$@" "$dir"
    MOUNTS+=("$dir")
}
t0=$(date +%s)

# ---- 1. a pristine Debian 12 root, made once and copied
if [ ! -f "$BASE/.lms-debootstrap-done" ]; then
    echo "debootstrap --variant=minbase $SUITE $BASE $MIRROR"
    rm -rf "$BASE"
    debootstrap --variant=minbase "$SUITE" "$BASE" "$MIRROR" >"$OUT/debootstrap.log" 2>&1 ||
        { tail -20 "$OUT/debootstrap.log"; die "debootstrap failed (log: $OUT/debootstrap.log)"; }
    # a Debian 12 machine's usual sources: the release, its updates, security
    cat >"$BASE/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
EOF
    date -u +%FT%TZ >"$BASE/.lms-debootstrap-done"
fi
echo "base root: $BASE (debootstrap of $(cat "$BASE/.lms-debootstrap-done"))"
rm -rf "$ROOT"
cp -a "$BASE" "$ROOT"
# what any machine has of its own: its name, resolving locally (without
# /etc/hosts each MPI start waits ~5 s on DNS for this host's name)
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
hostname >"$ROOT/etc/hostname"
cp /etc/hosts "$ROOT/etc/hosts"
grep -qw "$(hostname)" "$ROOT/etc/hosts" || echo "127.0.1.1 $(hostname)" >>"$ROOT/etc/hosts"
# a chroot is not a booted machine: packages must not start their daemons
# (munged, slurmd...) in it; they would outlive the check. A real machine
# would start them; the tests start their own either way.
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod +x "$ROOT/usr/sbin/policy-rc.d"

# ---- 2. a fresh clone, and the data read-only beside it
git clone -q --no-local "$REPO" "$ROOT/src/lmscale"
echo "clone: $(git -C "$ROOT/src/lmscale" log --oneline -1)"
if [ "$DATA" != none ] && [ -d "$DATA" ]; then
    mnt src/shared/data --bind "$DATA"
    mount -o remount,bind,ro "$ROOT/src/shared/data"
    echo "data: $DATA, read-only at /src/shared/data"
else
    echo "data: none (the GPT-2 parts will be skipped)"
fi

# ---- 3. what a running machine has: /proc, /sys, /dev, /dev/pts, /dev/shm (MPI), /run
mnt proc -t proc proc
mnt sys --rbind /sys # with /sys/fs/cgroup: slurmd needs it
mnt dev --bind /dev
mnt dev/pts -t devpts devpts -o newinstance,ptmxmode=0666
mnt dev/shm -t tmpfs shm -o mode=1777
mnt run -t tmpfs run -o mode=0755
mnt tmp -t tmpfs tmp -o mode=1777

# ---- 4. the run: packages first (network), then build and tests (CPU, under --lock)
if [ "$MODE" = full ]; then
    install='bash .ci/run --install'
    tests='CI=true bash .ci/run'
else
    readme_install=$(grep -o 'apt-get install [^`]*' "$REPO/README.md" | head -1)
    tests=$(grep -A1 '^# the tests' "$REPO/README.md" | tail -1)
    [ -n "$readme_install" ] && [ -n "$tests" ] || die "README.md: no apt-get install line or '# the tests' command found"
    install="export DEBIAN_FRONTEND=noninteractive && apt-get update -qq && echo '+ $readme_install' &&
        ${readme_install/apt-get install/apt-get install -y -qq} >/dev/null"
fi
in_root() { # in_root SCRIPT: runs SCRIPT in /src/lmscale in the root, with a clean environment
    chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        TERM=dumb LANG=C.UTF-8 /bin/bash -c "cd /src/lmscale && $1"
}
echo "log: $LOG"
: >"$LOG"
t1=$(date +%s)
set +e
echo "+ $install" | tee -a "$LOG"
in_root "$install" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
t2=$(date +%s)
if [ "$rc" = 0 ]; then
    echo "+ $tests" | tee -a "$LOG"
    export ROOT TESTS=$tests
    export -f in_root
    # shellcheck disable=SC2016
    ${LOCK:+flock "$LOCK"} bash -c 't=$(date +%s); in_root "$TESTS"; rc=$?
        echo "(the build and tests in the root: $(($(date +%s) - t)) s)"; exit $rc' 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
fi
set -e
t3=$(date +%s)
echo "fresh_machine_check ($MODE): exit code $rc; packages $((t2 - t1)) s, build and tests $((t3 - t2)) s" \
    "(with any wait for the lock), all $((t3 - t0)) s" | tee -a "$LOG"
exit "$rc"
}
