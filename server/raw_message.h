// File: raw_message.h
//
// The requests and answers of routerd's services (Router and RouterAdmin) as gRPC byte
// buffers, parsed and serialized here instead of inside gRPC. Why: gRPC 1.51 answers a unary
// request it cannot parse with UNIMPLEMENTED and an empty message, and on a bidi stream a message
// it cannot parse looks to the server like the client's half-close, so the stream ended OK with
// the rest of its queries unread and unanswered (both seen with a proto3 `string` field holding
// invalid UTF-8, which protobuf refuses to parse). Parsed here, such a request gets
// INVALID_ARGUMENT naming the field, and a stream answers that one message with an error item and
// keeps reading. Prompts themselves are `bytes` (`Query.text`), so any bytes are a valid prompt.
//
// Thread-safety: stateless functions; each call uses only its arguments.

#ifndef ROUTER_SERVER_RAW_MESSAGE_H_
#define ROUTER_SERVER_RAW_MESSAGE_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "google/protobuf/message_lite.h"
#include "grpcpp/support/byte_buffer.h"

namespace router::server {

// Parses `raw` into `out` (cleared first). INVALID_ARGUMENT when it does not parse:
// "<path>: not valid UTF-8 ..." when a string field holds invalid UTF-8 (path as in the other
// errors, e.g. "query.id" or "queries[3].allowed_models[0]"), else "request: not a valid
// <message type> message".
absl::Status ParseRequest(const grpc::ByteBuffer& raw, google::protobuf::Message& out);

// What a unary call is answered when its request message never arrived (`raw` holds no buffer at
// all, not even an empty message's): INVALID_ARGUMENT "request: the call carried no request
// message". A client that reset the call does not see it.
absl::Status NoRequestMessage();

// Serializes `message` into `raw`, replacing what it held.
void SerializeAnswer(const google::protobuf::Message& message, grpc::ByteBuffer& raw);

// Appends `entry`, encoded as one entry of the repeated message field `field_number`, to `wire`.
// Protobuf encodes a repeated field as the concatenation of its entries, so appending the entries
// of a message whose only field is that one, in order, gives the message's wire bytes (as
// RouteStream stages a RouteStreamResponse's items without building the message).
void AppendRepeatedEntry(int field_number, const google::protobuf::MessageLite& entry,
                         std::string& wire);

// `raw` becomes a copy of the wire bytes `wire`, replacing what it held.
void WireToBuffer(const std::string& wire, grpc::ByteBuffer& raw);

// Calls visit(field number, bytes) for each length-delimited field (a string, bytes or message
// field) in the message whose wire bytes are `wire`, in order, and skips the others. Nothing is
// checked, UTF-8 included, so bytes routerd wrote are always read back. Returns false if the
// bytes are malformed (the fields before the fault have been visited).
bool ForEachLengthDelimited(absl::string_view wire,
                            const std::function<void(int, absl::string_view)>& visit);

}  // namespace router::server

#endif  // ROUTER_SERVER_RAW_MESSAGE_H_
