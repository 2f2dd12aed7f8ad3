#!/usr/bin/env bash
# Gradient sync engine benchmark (issue 3), 2 ranks on this node under mpirun:
#  bandwidth of the engine vs one raw MPI_Allreduce of the same 32 MiB (target >= 0.9x), the gain
#  from fusing 2,000 small tensors into buckets, and the time overlap hides behind backward.
# Ends with one JSON line per measure (printed by build/kiln-bench-allreduce, rank 0).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/setup.sh" >/dev/null
bin="${KILN_BUILD_DIR:-$repo/build}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ranks="${KILN_BENCH_RANKS:-2}"
# One thread per rank; yield when waiting, as kiln-train does when ranks fill the cores.
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1 \
  mpirun -np "$ranks" --oversubscribe --bind-to none \
    --mca btl self,vader,tcp --mca btl_vader_single_copy_mechanism none \
    "$bin/kiln-bench-allreduce"
