#include "tests/fuzz/fuzz_targets.h"

#include <stdexcept>

#include "common/job_spec.h"
#include "common/protocol/codec.h"

namespace kiln::fuzz {

namespace {

template <typename M>
void DecodeAs(const protocol::Envelope& e) {
  if (e.type != M::kType) return;
  auto decoded = protocol::DecodeBody<M>(e);
  if (decoded.ok()) {
    // What decodes must encode again, and decode to the same body.
    const protocol::Envelope again = protocol::MakeEnvelope(*decoded, e.id);
    auto round = protocol::DecodeEnvelope(protocol::EncodeEnvelope(again));
    if (!round.ok()) throw std::logic_error("re-encoded message does not decode");
  }
}

}  // namespace

void Envelope(const std::string& bytes) {
  auto envelope = protocol::DecodeEnvelope(bytes);
  if (!envelope.ok()) return;
#define KILN_FUZZ_DECODE(M) DecodeAs<protocol::M>(*envelope);
  KILN_FOR_EACH_MESSAGE(KILN_FUZZ_DECODE)
#undef KILN_FUZZ_DECODE
}

void JobSpec(const std::string& bytes) {
  SpecParseResult parsed = ParseJobSpecText(bytes);
  if (!parsed.ok()) {
    for (const auto& e : parsed.errors) {
      if (e.field.empty() && e.message.empty()) throw std::logic_error("empty spec error");
    }
    return;
  }
  const kiln::JobSpec& s = parsed.spec;
  (void)s.InputFeatures();
  (void)s.ImageSide();
  (void)s.OutputUnits();
  (void)s.NumClasses();
}

}  // namespace kiln::fuzz
