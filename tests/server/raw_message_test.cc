#include "server/raw_message.h"

#include <string>
#include <utility>
#include <vector>

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

TEST(ForEachLengthDelimitedTest, VisitsStringAndMessageFieldsInOrderWithoutCheckingUtf8) {
  v1::Assignment a;
  a.set_query_id("q");
  a.set_model("not utf-8 \xff\xfe");  // protobuf refuses to parse this back; the walk does not
  a.set_predicted_quality(0.5);       // a fixed64 field: skipped
  a.set_assignment_id("");            // proto3 omits an empty string
  a.mutable_decision()->set_batch_size(7);
  std::vector<std::pair<int, std::string>> seen;
  ASSERT_TRUE(ForEachLengthDelimited(a.SerializeAsString(), [&](int field, absl::string_view v) {
    seen.emplace_back(field, std::string(v));
  }));
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], std::make_pair(int{v1::Assignment::kQueryIdFieldNumber}, std::string("q")));
  EXPECT_EQ(seen[1], std::make_pair(int{v1::Assignment::kModelFieldNumber},
                                    std::string("not utf-8 \xff\xfe")));
  EXPECT_EQ(seen[2].first, v1::Assignment::kDecisionFieldNumber);
  EXPECT_EQ(seen[2].second, a.decision().SerializeAsString());
  v1::Assignment reparsed;
  EXPECT_FALSE(reparsed.ParseFromString(a.SerializeAsString()));
}

TEST(ForEachLengthDelimitedTest, ReadsBackStagedItemsAndRejectsTruncatedBytes) {
  std::string wire;
  const v1::RouteBatchItem first = AssignmentItem("q1");
  const v1::RouteBatchItem second = AssignmentItem("q2");
  AppendRepeatedEntry(v1::RouteStreamResponse::kItemsFieldNumber, first, wire);
  AppendRepeatedEntry(v1::RouteStreamResponse::kItemsFieldNumber, second, wire);
  std::vector<std::string> items;
  ASSERT_TRUE(ForEachLengthDelimited(wire, [&](int field, absl::string_view v) {
    EXPECT_EQ(field, v1::RouteStreamResponse::kItemsFieldNumber);
    items.emplace_back(v);
  }));
  EXPECT_EQ(items,
            (std::vector<std::string>{first.SerializeAsString(), second.SerializeAsString()}));
  int visited = 0;
  EXPECT_FALSE(ForEachLengthDelimited(absl::string_view(wire).substr(0, wire.size() - 3),
                                      [&](int, absl::string_view) { ++visited; }));
  EXPECT_EQ(visited, 1);
}

TEST(WireToBufferTest, ReplacesWhatTheBufferHeld) {
  grpc::ByteBuffer raw;
  WireToBuffer(std::string(1000, 'x'), raw);
  WireToBuffer("abc", raw);
  EXPECT_EQ(raw.Length(), 3u);
}

}  // namespace
}  // namespace router::server
