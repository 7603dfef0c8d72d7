#include "router_core/utf8.h"

#include <optional>
#include <string>

#include "gtest/gtest.h"

namespace router::core {
namespace {

TEST(Utf8Test, AcceptsWellFormedTextOfEveryLength) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("llama-3-70b"));
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9"));           // U+00E9, 2 bytes
  EXPECT_TRUE(IsValidUtf8("\xe2\x82\xac"));          // U+20AC, 3 bytes
  EXPECT_TRUE(IsValidUtf8("\xf0\x9f\x98\x80"));      // U+1F600, 4 bytes
  EXPECT_TRUE(IsValidUtf8("\xf4\x8f\xbf\xbf"));      // U+10FFFF, the last code point
  EXPECT_TRUE(IsValidUtf8(std::string("a\0b", 3)));  // NUL is a code point
}

TEST(Utf8Test, GivesTheOffsetOfTheFirstBadSequence) {
  struct Case {
    std::string text;
    size_t offset;
  } cases[] = {
      {"caf\xe9", 3},               // Latin-1
      {"ok\xe2\x82", 2},            // truncated 3-byte sequence
      {"a\x80", 1},                 // lone continuation byte
      {"\xc0\xaf", 0},              // overlong '/'
      {"\xe0\x80\xaf", 0},          // overlong, 3 bytes
      {"x\xed\xa0\x80", 1},         // surrogate U+D800
      {"\xf4\x90\x80\x80", 0},      // above U+10FFFF
      {"\xf8\x88\x80\x80\x80", 0},  // 5-byte form
      {"\xc3\xa9\xc3(", 2},         // bad continuation after a good sequence
  };
  for (const Case& c : cases) {
    EXPECT_EQ(InvalidUtf8Offset(c.text), std::optional<size_t>(c.offset)) << c.text;
    EXPECT_FALSE(IsValidUtf8(c.text)) << c.text;
  }
}

}  // namespace
}  // namespace router::core
