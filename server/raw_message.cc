#include "server/raw_message.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/stubs/common.h"
#include "google/protobuf/wire_format_lite.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/slice.h"

namespace router::server {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::internal::WireFormatLite;

// The path of the first `string` field of `type` (or of a message nested in it) whose value in the
// wire bytes `wire` is not valid UTF-8; nullopt if there is none, or if the bytes break before one
// is found. `prefix` is the path of the message ("" at the top, else "name." or "name[k].").
std::optional<std::string> FindInvalidUtf8(absl::string_view wire, const Descriptor& type,
                                           const std::string& prefix = "") {
  std::optional<std::string> found;
  absl::flat_hash_map<int, int> occurrences;  // per repeated field: its next index
  ForEachLengthDelimited(wire, [&](int number, absl::string_view bytes) {
    if (found.has_value()) return;
    const FieldDescriptor* field = type.FindFieldByNumber(number);
    // Only a string's bytes are checked, and only a message's bytes can hold a string.
    if (field == nullptr || (field->type() != FieldDescriptor::TYPE_STRING &&
                             field->type() != FieldDescriptor::TYPE_MESSAGE)) {
      return;
    }
    const std::string path =
        field->is_repeated()
            ? absl::StrCat(prefix, field->name(), "[", occurrences[field->number()]++, "]")
            : absl::StrCat(prefix, field->name());
    if (field->type() == FieldDescriptor::TYPE_MESSAGE) {
      found = FindInvalidUtf8(bytes, *field->message_type(), path + ".");
    } else if (!google::protobuf::internal::IsStructurallyValidUTF8(
                   bytes.data(), static_cast<int>(bytes.size()))) {
      found = path;
    }
  });
  return found;
}

}  // namespace

absl::Status NoRequestMessage() {
  return absl::InvalidArgumentError("request: the call carried no request message");
}

absl::Status ParseRequest(const grpc::ByteBuffer& raw, google::protobuf::Message& out) {
  grpc::ByteBuffer buffer(raw);  // shares the slices; the reader needs a non-const buffer
  {
    grpc::ProtoBufferReader reader(&buffer);
    if (reader.status().ok() && out.ParseFromZeroCopyStream(&reader)) return absl::OkStatus();
  }
  // Only a request that failed to parse is read a second time, to say why.
  std::vector<grpc::Slice> slices;
  std::string wire;
  if (raw.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      wire.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  out.Clear();
  if (std::optional<std::string> path = FindInvalidUtf8(wire, *out.GetDescriptor())) {
    return absl::InvalidArgumentError(
        absl::StrCat(*path,
                     ": not valid UTF-8 (a protobuf string must be; Query.text takes any "
                     "bytes)"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("request: not a valid ", out.GetDescriptor()->full_name(), " message"));
}

void SerializeAnswer(const google::protobuf::Message& message, grpc::ByteBuffer& raw) {
  raw.Clear();  // gRPC's serializer writes only into an empty buffer
  bool own_buffer = false;
  // Fails only for a message over 2 GiB, which an answer never is.
  (void)grpc::SerializationTraits<google::protobuf::Message>::Serialize(message, &raw, &own_buffer);
}

void AppendRepeatedEntry(int field_number, const google::protobuf::MessageLite& entry,
                         std::string& wire) {
  const size_t size = entry.ByteSizeLong();
  uint8_t header[10];  // two varint32s of at most 5 bytes each
  uint8_t* end = google::protobuf::io::CodedOutputStream::WriteVarint32ToArray(
      WireFormatLite::MakeTag(field_number, WireFormatLite::WIRETYPE_LENGTH_DELIMITED), header);
  end = google::protobuf::io::CodedOutputStream::WriteVarint32ToArray(static_cast<uint32_t>(size),
                                                                      end);
  wire.append(reinterpret_cast<const char*>(header), static_cast<size_t>(end - header));
  const size_t at = wire.size();
  wire.resize(at + size);
  entry.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(wire.data() + at));
}

bool ForEachLengthDelimited(absl::string_view wire,
                            const std::function<void(int, absl::string_view)>& visit) {
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(wire.data()),
                                            static_cast<int>(wire.size()));
  while (const uint32_t tag = in.ReadTag()) {
    if (WireFormatLite::GetTagWireType(tag) != WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      if (!WireFormatLite::SkipField(&in, tag)) return false;
      continue;
    }
    uint32_t length = 0;
    const void* data = nullptr;
    int available = 0;
    if (!in.ReadVarint32(&length) || !in.GetDirectBufferPointer(&data, &available) ||
        static_cast<uint32_t>(available) < length) {
      // GetDirectBufferPointer fails at the end of the bytes: only an empty field is left then.
      if (length == 0 && available == 0) {
        visit(WireFormatLite::GetTagFieldNumber(tag), absl::string_view());
        continue;
      }
      return false;
    }
    visit(WireFormatLite::GetTagFieldNumber(tag),
          absl::string_view(static_cast<const char*>(data), length));
    in.Skip(static_cast<int>(length));
  }
  // ReadTag returns 0 at the end of the bytes, and for a malformed tag before it.
  return in.CurrentPosition() == static_cast<int>(wire.size());
}

void WireToBuffer(const std::string& wire, grpc::ByteBuffer& raw) {
  grpc::Slice slice(wire);
  grpc::ByteBuffer copy(&slice, 1);
  raw.Swap(&copy);
}

}  // namespace router::server
