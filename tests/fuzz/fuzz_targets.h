// What the fuzzers exercise, as plain functions: each takes arbitrary bytes and must neither crash
// nor hang nor leak on any of them. Used by the libFuzzer targets (scripts/fuzz.sh) and by the
// regression test that replays every input kept in tests/fuzz/corpus/.
#pragma once

#include <string>

namespace kiln::fuzz {

// The scheduler's first step on every frame: the envelope decoder, then the typed decoder of
// the message type it names (every type, including checkpoint chunks), and the re-encoding of
// what decoded.
void Envelope(const std::string& bytes);
// The job spec validator as the CLI and the scheduler run it, then the spec-derived values
// kiln-train and the scheduler compute from a valid spec.
void JobSpec(const std::string& bytes);
// The scheduler's checkpoint upload handlers: a sequence of ckpt_begin and ckpt_chunk messages
// (truthful, lying, out of order, malformed) from an admitted worker, interleaved with a client's
// reads, removals and listings, all decoded from `bytes` and handled by one real SchedulerService
// that lives for the whole process (in a scratch directory under /dev/shm).
void CheckpointUpload(const std::string& bytes);

}  // namespace kiln::fuzz
