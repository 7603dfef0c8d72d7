// The in-process ledger: the conformance suite (ledger_conformance.h) on a fake clock, and what
// only it does: exact expiry and refill by its clock, ids of two ledgers started at once, and the
// validation of its options.

#include "router_core/serving/local_ledger.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/fake_clock.h"
#include "tests/router_core/testing/ledger_conformance.h"
#include "tests/router_core/testing/ledger_testing.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using testing::CommitIds;
using testing::FakeClock;
using testing::LedgerFleet;
using testing::LedgerTestPool;
using testing::Paced;

// One LocalLedger stands for every replica; time passes on its fake clock.
class LocalFleet final : public LedgerFleet {
 public:
  absl::Status Start(const LedgerOptions& options, std::vector<LedgerModel> models) override {
    absl::StatusOr<std::unique_ptr<LocalLedger>> l =
        LocalLedger::Create(options, std::move(models), &clock_);
    if (!l.ok()) return l.status();
    ledger_ = *std::move(l);
    return absl::OkStatus();
  }
  Ledger& replica(int) override { return *ledger_; }
  void Wait(absl::Duration d) override { clock_.Advance(d); }

 private:
  FakeClock clock_;
  std::unique_ptr<LocalLedger> ledger_;
};

std::unique_ptr<LedgerFleet> MakeLocalFleet() { return std::make_unique<LocalFleet>(); }

}  // namespace

namespace testing {
INSTANTIATE_TEST_SUITE_P(Local, LedgerConformanceTest,
                         ::testing::Values(LedgerBackend{"in_process", &MakeLocalFleet}),
                         BackendName);
}  // namespace testing

namespace {

std::unique_ptr<Ledger> Make(const LedgerOptions& o, const FakeClock& clock) {
  absl::StatusOr<std::unique_ptr<LocalLedger>> l =
      LocalLedger::Create(o, LedgerTestPool(), &clock);
  EXPECT_THAT(l, IsOk());
  return *std::move(l);
}

TEST(LocalLedgerTest, ALeaseTimeoutShortenedAtRuntimeExpiresTheNewerLeaseFirst) {
  FakeClock clock;
  LedgerOptions o;
  o.lease_timeout = absl::Seconds(10);
  auto ledger = Make(o, clock);
  auto older = CommitIds(*ledger, {{"local", 0.0}});
  ASSERT_THAT(older, IsOk());
  o.lease_timeout = absl::Seconds(2);
  ASSERT_THAT(ledger->SetOptions(o), IsOk());
  auto newer = CommitIds(*ledger, {{"local", 0.0}});
  ASSERT_THAT(newer, IsOk());

  clock.Advance(absl::Seconds(3));
  EXPECT_EQ(ledger->InUse("local").value(), 1);
  auto done = ledger->Complete((*newer)[0], std::nullopt);
  ASSERT_THAT(done, IsOk());
  EXPECT_FALSE(done->lease_was_active);
  done = ledger->Complete((*older)[0], std::nullopt);
  ASSERT_THAT(done, IsOk());
  EXPECT_TRUE(done->lease_was_active);
}

TEST(LocalLedgerTest, LeasesLeftOpenAmongManyCompletedStillExpireOnTime) {
  FakeClock clock;
  LedgerOptions o;
  o.lease_timeout = absl::Seconds(10);
  auto ledger = Make(o, clock);
  std::vector<Reservation> many(500, {"api", 0.001});
  auto ids = CommitIds(*ledger, many);
  ASSERT_THAT(ids, IsOk());
  // Completing all but every 49th lease (odd and even sequence numbers) drops the completed ones
  // from the expiry order.
  for (size_t k = 0; k < ids->size(); ++k) {
    if (k % 49 != 0) {
      ASSERT_THAT(ledger->Complete((*ids)[k], std::nullopt), IsOk());
    }
  }
  EXPECT_EQ(ledger->Totals()->open_assignments, 11);
  clock.Advance(absl::Seconds(9));
  EXPECT_EQ(ledger->Totals()->open_assignments, 11);
  clock.Advance(absl::Seconds(1));
  EXPECT_EQ(ledger->Totals()->open_assignments, 0);
  EXPECT_NEAR(ledger->Totals()->reserved_usd, 0.0, 1e-12);
  auto late = ledger->Complete((*ids)[49], std::nullopt);
  ASSERT_THAT(late, IsOk());
  EXPECT_FALSE(late->lease_was_active);
}

// Ids carry a random tag: knowing how ids are numbered does not give another caller's id.
TEST(LocalLedgerTest, IdsAreNotGuessableFromTheirNumbering) {
  FakeClock clock;  // both ledgers start at the same time, so their prefixes are the same
  auto a = Make(LedgerOptions{}, clock);
  auto b = Make(LedgerOptions{}, clock);
  auto ids_a = CommitIds(*a, std::vector<Reservation>(50, {"api", 0.0}));
  auto ids_b = CommitIds(*b, std::vector<Reservation>(50, {"api", 0.0}));
  ASSERT_THAT(ids_a, IsOk());
  ASSERT_THAT(ids_b, IsOk());
  for (size_t k = 0; k < ids_a->size(); ++k) {
    EXPECT_NE((*ids_a)[k], (*ids_b)[k]);
    EXPECT_THAT(b->Complete((*ids_a)[k], std::nullopt),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("assignment_id")));
  }
  EXPECT_EQ(b->Totals()->open_assignments, 50);
}

// The bucket refills at exactly its rate by the ledger's clock.
TEST(LocalLedgerTest, PacingRefillsAtItsRate) {
  FakeClock clock;
  auto ledger = Make(Paced(0.5, 1.0), clock);
  ASSERT_THAT(CommitIds(*ledger, {{"api", 0.8}}), IsOk());
  clock.Advance(absl::Seconds(1));
  EXPECT_NEAR(ledger->Snapshot()->spend_allowance_usd, 0.7, 1e-12);
  clock.Advance(absl::Seconds(100));
  EXPECT_DOUBLE_EQ(ledger->Snapshot()->spend_allowance_usd, 1.0);
}

TEST(LocalLedgerTest, RejectsBadOptionsAndModels) {
  FakeClock clock;
  LedgerOptions o;
  o.lease_timeout = absl::ZeroDuration();
  EXPECT_THAT(LocalLedger::Create(o, LedgerTestPool(), &clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lease_timeout")));
  LedgerOptions negative;
  negative.spend_burst_usd = -1;  // refused whether or not pacing is on
  EXPECT_THAT(LocalLedger::Create(negative, LedgerTestPool(), &clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spend_burst_usd")));
  EXPECT_THAT(LocalLedger::Create(LedgerOptions{}, {{"a", 1}, {"a", 2}}, &clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("models[1].name: duplicate")));
  EXPECT_THAT(LocalLedger::Create(LedgerOptions{}, LedgerTestPool(), nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("clock")));
}

// What is left of a window's duration is exact by the ledger's clock.
TEST(LocalLedgerTest, AnInlineWindowsTimeLeftIsItsDurationLessItsAge) {
  FakeClock clock;
  auto ledger = Make(LedgerOptions{}, clock);
  const InlineWindowSpec spec{100, absl::Seconds(10)};
  EXPECT_EQ(ledger->ArriveInline(spec)->time_left, absl::Seconds(10));
  clock.Advance(absl::Seconds(4));
  absl::StatusOr<InlineArrival> a = ledger->ArriveInline(spec);
  EXPECT_EQ(a->window, 1u);
  EXPECT_EQ(a->time_left, absl::Seconds(6));
  clock.Advance(absl::Seconds(6));
  EXPECT_EQ(ledger->ArriveInline(spec)->window, 2u);
}

}  // namespace
}  // namespace router::core
