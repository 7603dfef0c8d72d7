// File: admin_service.h
//
// router.v1.RouterAdmin: the model pool and the runtime configuration (router_runtime.h does the
// work; this adapts protos). Each call is answered inline (admin changes are small and
// serialized), except PlanInstances, which plans on a thread of its own and answers from there.
//
// Thread-safety: as the callback API requires.

#ifndef ROUTER_SERVER_ADMIN_SERVICE_H_
#define ROUTER_SERVER_ADMIN_SERVICE_H_

#include <atomic>

#include "router/v1/router.grpc.pb.h"
#include "server/router_runtime.h"

namespace router::server {

class AdminService final : public v1::RouterAdmin::CallbackService {
 public:
  explicit AdminService(RouterRuntime* runtime) : runtime_(runtime) {}

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* ctx,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* UpsertModel(grpc::CallbackServerContext* ctx,
                                        const v1::UpsertModelRequest* request,
                                        v1::UpsertModelResponse* response) override;
  grpc::ServerUnaryReactor* RemoveModel(grpc::CallbackServerContext* ctx,
                                        const v1::RemoveModelRequest* request,
                                        v1::RemoveModelResponse* response) override;
  grpc::ServerUnaryReactor* GetConfig(grpc::CallbackServerContext* ctx,
                                      const v1::GetConfigRequest* request,
                                      v1::GetConfigResponse* response) override;
  grpc::ServerUnaryReactor* UpdateConfig(grpc::CallbackServerContext* ctx,
                                         const v1::UpdateConfigRequest* request,
                                         v1::UpdateConfigResponse* response) override;
  grpc::ServerUnaryReactor* PlanInstances(grpc::CallbackServerContext* ctx,
                                          const v1::PlanInstancesRequest* request,
                                          v1::PlanInstancesResponse* response) override;

 private:
  grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* ctx, absl::string_view method,
                                   absl::Time start, const absl::Status& status);
  void FillStatus(const RuntimeState& state, const std::string& name, v1::ModelStatus* out);

  RouterRuntime* const runtime_;
  // Plans run on their own thread (they take seconds); one at a time.
  std::atomic<bool> planning_{false};
};

}  // namespace router::server

#endif  // ROUTER_SERVER_ADMIN_SERVICE_H_
