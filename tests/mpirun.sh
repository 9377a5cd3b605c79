#!/usr/bin/env bash
# Runs a command on N local MPI ranks whatever the MPI: Open MPI needs
# --oversubscribe for more ranks than cores and --allow-run-as-root as root;
# MPICH (hydra) takes neither. The launcher is $LMS_MPIRUN when set (e.g.
# /usr/bin/mpiexec.mpich, for a build against MPICH), otherwise mpirun from
# PATH; it must belong to the MPI the binary was built with.
# Usage: [LMS_MPIRUN=launcher] tests/mpirun.sh N cmd args...
set -eu
n=$1
shift
launcher=${LMS_MPIRUN:-mpirun}
# Under the sanitizer build (docs/reliability.md): no leak checking in the
# ranks, because Open MPI's allocations come from components it unloads at
# MPI_Finalize and LeakSanitizer cannot attribute (or suppress) them; heap
# errors and undefined behaviour stay fatal.
[ -z "${ASAN_OPTIONS:-}" ] || export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
command -v "$launcher" >/dev/null || { echo "mpirun.sh: launcher '$launcher' not found" >&2; exit 127; }
version=$("$launcher" --version 2>&1 || true)
# Open MPI says "mpirun (Open MPI) 4.1.4", or "OpenRTE" when called by another
# name (mpirun.openmpi); MPICH's hydra says "HYDRA build details".
if grep -Eq "Open MPI|OpenRTE|open-mpi\.org" <<<"$version"; then
    extra=(--oversubscribe --bind-to none)
    [ "$(id -u)" = 0 ] && extra+=(--allow-run-as-root)
    exec "$launcher" "${extra[@]}" -np "$n" "$@"
fi
exec "$launcher" -np "$n" "$@"
