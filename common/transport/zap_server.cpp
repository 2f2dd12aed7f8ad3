#include "common/transport/zap_server.h"

#include <zmq.h>

namespace kiln::transport {

namespace {
constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";  // fixed by RFC 27
}  // namespace

Result<std::unique_ptr<ZapServer>> ZapServer::Bind(Context& context) {
  std::unique_ptr<ZapServer> server(new ZapServer(context));
  auto bound = server->socket_.Bind(kZapEndpoint);
  if (!bound.ok()) return bound.status();
  return server;
}

int ZapServer::AnswerPending(const std::function<ZapVerdict(const ZapRequest&)>& decide) {
  int answered = 0;
  while (auto frames = socket_.Receive()) {
    // [version][request id][domain][address][identity][mechanism][credentials...]
    const Frames& f = *frames;
    ZapVerdict verdict;
    std::string request_id = f.size() > 1 ? f[1] : "";
    if (f.size() < 6 || f[0] != "1.0") {
      verdict = {false, "", "malformed ZAP request"};
    } else {
      ZapRequest request{f[2], f[3], f[5], ""};
      if (request.mechanism == "CURVE" && f.size() >= 7 && f[6].size() == 32) {
        char z85[41];
        if (zmq_z85_encode(z85, reinterpret_cast<const uint8_t*>(f[6].data()), 32) != nullptr) {
          request.public_key = z85;
        }
      }
      verdict = decide(request);
    }
    (void)socket_.Send({"1.0", request_id, verdict.allow ? "200" : "400",
                        verdict.allow ? "OK" : verdict.reason, verdict.allow ? verdict.user_id : "",
                        ""});
    ++answered;
  }
  return answered;
}

}  // namespace kiln::transport
