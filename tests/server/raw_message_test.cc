#include "server/raw_message.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router/v1/router.pb.h"

namespace router::server {
namespace {

v1::RouteBatchItem AssignmentItem(const std::string& query_id) {
  v1::RouteBatchItem item;
  v1::Assignment* a = item.mutable_assignment();
  a->set_query_id(query_id);
  a->set_model("provider/a-model-name-longer-than-the-inline-buffer");
  a->set_predicted_quality(0.75);
  a->add_fallback_models("provider/fallback");
  a->mutable_decision()->set_batch_size(3);
  return item;
}

TEST(AppendRepeatedEntryTest, ConcatenatedEntriesAreTheMessageWithThoseItems) {
  v1::RouteStreamResponse expected;
  *expected.add_items() = AssignmentItem("q1");
  v1::RouteBatchItem error;
  error.mutable_error()->set_query_id("q2");
  error.mutable_error()->set_code(3);
  error.mutable_error()->set_message(std::string(300, 'e'));  // a length of two varint bytes
  *expected.add_items() = error;
  *expected.add_items() = AssignmentItem("q3");

  std::string wire;
  for (const v1::RouteBatchItem& item : expected.items()) {
    AppendRepeatedEntry(v1::RouteStreamResponse::kItemsFieldNumber, item, wire);
  }
  EXPECT_EQ(wire, expected.SerializeAsString());

  grpc::ByteBuffer raw;
  WireToBuffer(wire, raw);
  v1::RouteStreamResponse parsed;
  ASSERT_TRUE(ParseRequest(raw, parsed).ok());
  EXPECT_EQ(parsed.SerializeAsString(), expected.SerializeAsString());
  ASSERT_EQ(parsed.items_size(), 3);
  EXPECT_EQ(parsed.items(1).error().message(), std::string(300, 'e'));
  EXPECT_EQ(parsed.items(2).assignment().query_id(), "q3");
}

TEST(WireToBufferTest, ReplacesWhatTheBufferHeld) {
  grpc::ByteBuffer raw;
  WireToBuffer(std::string(1000, 'x'), raw);
  WireToBuffer("abc", raw);
  EXPECT_EQ(raw.Length(), 3u);
}

}  // namespace
}  // namespace router::server
