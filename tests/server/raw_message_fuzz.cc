// libFuzzer target of routerd's reading of raw gRPC messages (raw_message.h): ParseRequest, which
// every Router and RouterAdmin handler (RouteStream's message by message) calls on the bytes a
// client sent, with its UTF-8 walk of a message that does not parse; and ForEachLengthDelimited,
// the wire walker, three levels deep as RouteStream reads its staged answers. The first byte picks
// the request type and where the bytes are cut into two slices (gRPC hands messages over in
// slices); the rest is the message. Any bytes give a message or INVALID_ARGUMENT naming the field
// or the type, never a crash, a hang or unbounded memory; the walk never reads outside the bytes.
// Seeds: raw_message_fuzz_corpus/. Run: build-fuzz/bin/raw_message_fuzz DIR (docs/fuzzing.md).

#include <cstddef>
#include <cstdint>
#include <memory>

#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "router/v1/router.pb.h"
#include "server/raw_message.h"
#include "tests/router_core/testing/fuzz_check.h"

namespace router::server {
namespace {

// Every request type routerd's services parse with ParseRequest.
std::unique_ptr<google::protobuf::Message> NewRequest(int pick) {
  switch (pick % 11) {
    case 0: return std::make_unique<v1::RouteStreamRequest>();
    case 1: return std::make_unique<v1::RouteRequest>();
    case 2: return std::make_unique<v1::RouteBatchRequest>();
    case 3: return std::make_unique<v1::CompleteRequest>();
    case 4: return std::make_unique<v1::ListModelsRequest>();
    case 5: return std::make_unique<v1::UpsertModelRequest>();
    case 6: return std::make_unique<v1::RemoveModelRequest>();
    case 7: return std::make_unique<v1::GetConfigRequest>();
    case 8: return std::make_unique<v1::UpdateConfigRequest>();
    case 9: return std::make_unique<v1::PlanInstancesRequest>();
    default: return std::make_unique<v1::RouteStreamResponse>();  // what RouteStream stages
  }
}

}  // namespace
}  // namespace router::server

// LLVMFuzzerInitialize: tests/server/testing/fuzz_silent_protobuf.cc.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace router::server;
  namespace testing = router::core::testing;
  if (size < 1) return 0;
  const absl::string_view wire = testing::FuzzText(data + 1, size - 1);
  const size_t cut = wire.empty() ? 0 : (data[0] >> 4) * wire.size() / 16;
  grpc::Slice slices[2] = {grpc::Slice(wire.data(), cut),
                           grpc::Slice(wire.data() + cut, wire.size() - cut)};
  const grpc::ByteBuffer raw(slices, 2);
  std::unique_ptr<google::protobuf::Message> request = NewRequest(data[0] & 15);
  const absl::Status status = ParseRequest(raw, *request);
  if (!status.ok()) testing::CheckRefusal("ParseRequest", status);

  size_t visited = 0;
  auto in_bounds = [&](absl::string_view outer, absl::string_view inner) {
    testing::CheckInvariant(inner.empty() || (inner.data() >= outer.data() &&
                                              inner.data() + inner.size() <=
                                                  outer.data() + outer.size()),
                            "a visited field lies inside its message");
    visited += inner.size();
  };
  ForEachLengthDelimited(wire, [&](int, absl::string_view item) {
    in_bounds(wire, item);
    ForEachLengthDelimited(item, [&](int, absl::string_view assignment) {
      in_bounds(item, assignment);
      ForEachLengthDelimited(assignment,
                             [&](int, absl::string_view value) { in_bounds(assignment, value); });
    });
  });
  return 0;
}
