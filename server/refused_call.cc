#include "server/refused_call.h"

#include "server/status_util.h"

namespace router::server {
namespace {

class RefusedStreamReactor final
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit RefusedStreamReactor(const absl::Status& status) { Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* RefusedStream(
    const absl::Status& status) {
  return new RefusedStreamReactor(status);
}

grpc::ServerUnaryReactor* RefusedUnary(grpc::CallbackServerContext* ctx,
                                       const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace router::server
