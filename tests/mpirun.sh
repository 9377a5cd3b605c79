#!/usr/bin/env bash
# Runs a command on N local MPI ranks whatever the MPI: Open MPI needs
# --oversubscribe for more ranks than cores and --allow-run-as-root as root;
# MPICH (hydra) takes neither.  Usage: tests/mpirun.sh N cmd args...
set -eu
n=$1
shift
if mpirun --version 2>&1 | grep -q "Open MPI"; then
    extra=(--oversubscribe --bind-to none)
    [ "$(id -u)" = 0 ] && extra+=(--allow-run-as-root)
    exec mpirun "${extra[@]}" -np "$n" "$@"
fi
exec mpirun -np "$n" "$@"
