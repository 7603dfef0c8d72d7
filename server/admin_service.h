// File: admin_service.h
//
// router.v1.RouterAdmin: the model pool, the runtime configuration and what was learned from
// outcomes (router_runtime.h and outcome_learning.h do the work; this adapts protos). Each call is answered inline (admin changes are small and
// serialized), except PlanInstances, which plans on a thread of its own and answers from there.
// Every call is first authorized (call_auth.h): refused calls get UNAUTHENTICATED or
// PERMISSION_DENIED and change nothing.
//
// Thread-safety: as the callback API requires.

#ifndef ROUTER_SERVER_ADMIN_SERVICE_H_
#define ROUTER_SERVER_ADMIN_SERVICE_H_

#include <atomic>

#include "router/v1/router.grpc.pb.h"
#include "server/call_auth.h"
#include "server/router_runtime.h"

namespace router::server {

// The eight methods of router.v1.RouterAdmin, each taking and giving raw bytes (raw_message.h: a
// request that does not parse gets INVALID_ARGUMENT naming the field).
using RawRouterAdminService = v1::RouterAdmin::WithRawCallbackMethod_ListModels<
    v1::RouterAdmin::WithRawCallbackMethod_UpsertModel<
        v1::RouterAdmin::WithRawCallbackMethod_RemoveModel<
            v1::RouterAdmin::WithRawCallbackMethod_GetConfig<
                v1::RouterAdmin::WithRawCallbackMethod_UpdateConfig<
                    v1::RouterAdmin::WithRawCallbackMethod_PlanInstances<
                        v1::RouterAdmin::WithRawCallbackMethod_GetLearnedStats<
                            v1::RouterAdmin::WithRawCallbackMethod_ResetLearnedStats<
                                v1::RouterAdmin::Service>>>>>>>>;

class AdminService final : public RawRouterAdminService {
 public:
  // `authorizer` (not owned) must outlive the service.
  AdminService(RouterRuntime* runtime, const CallAuthorizer* authorizer)
      : runtime_(runtime), authorizer_(authorizer) {}

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* ctx,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* UpsertModel(grpc::CallbackServerContext* ctx,
                                        const grpc::ByteBuffer* request,
                                        grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* RemoveModel(grpc::CallbackServerContext* ctx,
                                        const grpc::ByteBuffer* request,
                                        grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetConfig(grpc::CallbackServerContext* ctx,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* UpdateConfig(grpc::CallbackServerContext* ctx,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* PlanInstances(grpc::CallbackServerContext* ctx,
                                          const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetLearnedStats(grpc::CallbackServerContext* ctx,
                                            const grpc::ByteBuffer* request,
                                            grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ResetLearnedStats(grpc::CallbackServerContext* ctx,
                                              const grpc::ByteBuffer* request,
                                              grpc::ByteBuffer* response) override;

 private:
  // Parses the request, runs `handle` on it, serializes its response when OK, and answers.
  template <typename Request, typename Response>
  grpc::ServerUnaryReactor* Serve(grpc::CallbackServerContext* ctx, absl::string_view method,
                                  const grpc::ByteBuffer* raw_request,
                                  grpc::ByteBuffer* raw_response,
                                  absl::Status (AdminService::*handle)(const Request&, Response&));
  grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* ctx, absl::string_view method,
                                   absl::Time start, const absl::Status& status);
  // UNAVAILABLE when the ledger cannot say what is in use.
  absl::Status FillStatus(const RuntimeState& state, const std::string& name, v1::ModelStatus* out);

  absl::Status DoListModels(const v1::ListModelsRequest& request, v1::ListModelsResponse& response);
  absl::Status DoUpsertModel(const v1::UpsertModelRequest& request,
                             v1::UpsertModelResponse& response);
  absl::Status DoRemoveModel(const v1::RemoveModelRequest& request,
                             v1::RemoveModelResponse& response);
  absl::Status DoGetConfig(const v1::GetConfigRequest& request, v1::GetConfigResponse& response);
  absl::Status DoUpdateConfig(const v1::UpdateConfigRequest& request,
                              v1::UpdateConfigResponse& response);
  absl::Status DoGetLearnedStats(const v1::GetLearnedStatsRequest& request,
                                 v1::GetLearnedStatsResponse& response);
  absl::Status DoResetLearnedStats(const v1::ResetLearnedStatsRequest& request,
                                   v1::ResetLearnedStatsResponse& response);

  RouterRuntime* const runtime_;
  const CallAuthorizer* const authorizer_;
  // Plans run on their own thread (they take seconds); one at a time.
  std::atomic<bool> planning_{false};
};

}  // namespace router::server

#endif  // ROUTER_SERVER_ADMIN_SERVICE_H_
