// KILN_VECTOR_CLONES: compile a hot loop for AVX-512 (x86-64-v4), AVX2 (x86-64-v3) and baseline
// x86-64, the best one picked when the program loads (GCC function multi-versioning), so one
// binary runs everywhere and still uses the wide units. Files using it are built with
// -ffp-contract=off: no version fuses a multiply and an add, so all of them round alike and
// these kernels add no dependence on the CPU to a run's results.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KILN_VECTOR_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KILN_VECTOR_CLONES
#endif
