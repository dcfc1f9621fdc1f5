// The LMDB map is resized only with no transaction of this process open: TxnGate's
// rules, and a store read by several threads while another process grows its map.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "index/store.h"
#include "index/txn_gate.h"
#include "tests/tar_builder.h"

namespace imgfs {
namespace {

using std::chrono::milliseconds;

// Polls cond for up to 10 s.
template <typename Cond>
bool Eventually(Cond cond) {
  for (int i = 0; i < 1000; i++) {
    if (cond()) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return cond();
}

TEST(TxnGateTest, ResizeWaitsForOpenTransactions) {
  TxnGate gate;
  gate.Enter();
  std::atomic<bool> ran{false};
  std::thread resizer([&] { EXPECT_TRUE(gate.Exclusive([&] { ran = true; })); });
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_FALSE(ran) << "resized under an open transaction";
  gate.Leave();
  resizer.join();
  EXPECT_TRUE(ran);
  EXPECT_EQ(gate.ActiveForTest(), 0);
}

// A pending resize holds back new transactions (not starved by short readers), but
// not one more on a thread that already has a transaction open (that would deadlock).
TEST(TxnGateTest, PendingResizeHoldsNewTransactionsBackButNotNestedOnes) {
  TxnGate gate;
  gate.Enter();  // this thread's transaction
  std::atomic<int> order{0};
  std::atomic<int> resized_at{-1}, other_entered_at{-1};
  std::thread resizer([&] { gate.Exclusive([&] { resized_at = order++; }); });
  ASSERT_TRUE(Eventually([&] { return gate.ResizePendingForTest(); }));
  std::thread other([&] {
    gate.Enter();
    other_entered_at = order++;
    gate.Leave();
  });
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(other_entered_at, -1) << "a new transaction started while a resize waited";
  gate.Enter();  // nested on this thread: must not block
  gate.Leave();
  EXPECT_EQ(resized_at, -1);
  gate.Leave();
  resizer.join();
  other.join();
  EXPECT_EQ(resized_at, 0);
  EXPECT_EQ(other_entered_at, 1);
}

TEST(TxnGateTest, ResizeFromAThreadHoldingATransactionRefuses) {
  TxnGate gate;
  gate.Enter();
  bool ran = false;
  EXPECT_FALSE(gate.Exclusive([&] { ran = true; }));
  EXPECT_FALSE(ran);
  gate.Leave();
  EXPECT_TRUE(gate.Exclusive([&] { ran = true; }));
  EXPECT_TRUE(ran);
}

// Adds one image whose layer's entry table is `bytes` long.
Status AddBigImage(Store& store, int i, size_t bytes) {
  Store::NewImage n;
  auto id = store.blobs().Put("{\"n\":" + std::to_string(i) + "}", std::nullopt);
  if (!id.ok()) return id.status();
  n.image.id = *id;
  Store::NewLayer l;
  l.record.diff_id = Sha256Of("layer " + std::to_string(i));
  l.record.blob = Sha256Of("blob " + std::to_string(i));
  l.encoded_entries = std::string(bytes, 'x');
  n.layers = {l};
  n.image.diff_ids = {l.record.diff_id};
  n.tree_record = EncodeTreeRoot(TreeRoot{});
  return store.AddImages({n});
}

// Another process grows the map again and again while three threads here scan the
// index without pause: each growth makes a transaction here see MDB_MAP_RESIZED and
// adopt the new size. Adopting it while another thread read would unmap the pages
// under that reader (a crash, or garbage records).
TEST(StoreResizeTest, ReadersSurviveAnotherProcessGrowingTheMap) {
  std::string dir = test::MakeTempDir();
  Store::SetInitialMapSizeForTest(size_t{1} << 20);
  struct Restore {  // the map size later stores open with, even when an assertion fails
    ~Restore() { Store::SetInitialMapSizeForTest(size_t{64} << 30); }
  } restore;
  {
    auto s = Store::Open(dir);
    ASSERT_TRUE(s.ok()) << s.status().message();
    for (int i = 0; i < 200; i++) ASSERT_TRUE(AddBigImage(**s, i, 64).ok());
  }
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  constexpr int kGrowths = 6;
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The child: its own environment; waits until the parent's readers run.
    char c;
    ::close(go[1]);
    if (::read(go[0], &c, 1) != 1) ::_exit(3);
    auto s = Store::Open(dir);
    if (!s.ok()) ::_exit(4);
    for (int g = 0; g < kGrowths; g++) {
      if (!AddBigImage(**s, 1000 + g, (size_t{1} << 20) << g).ok()) ::_exit(5);
      ::usleep(20000);
    }
    ::_exit(0);
  }
  ::close(go[0]);
  // On every way out (an assertion failing too): the child is released (its read of
  // the pipe ends) and reaped, the directory removed; before that, the store closed;
  // before that, the readers stopped and joined.
  int status = -1;
  struct ChildCleanup {
    int fd;
    pid_t child;
    int& status;
    std::string dir;
    ~ChildCleanup() {
      ::close(fd);
      if (status == -1) ::waitpid(child, &status, 0);
      test::RemoveTree(dir);
    }
  } child_cleanup{go[1], child, status, dir};
  auto s = Store::Open(dir);
  ASSERT_TRUE(s.ok()) << s.status().message();
  Store& store = **s;
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0}, scans{0};
  std::atomic<size_t> most{0};
  std::vector<std::thread> readers;
  struct ReaderCleanup {
    std::atomic<bool>& stop;
    std::vector<std::thread>& readers;
    ~ReaderCleanup() {
      stop = true;
      for (auto& r : readers) r.join();
    }
  } reader_cleanup{stop, readers};
  for (int t = 0; t < 3; t++) {
    readers.emplace_back([&] {
      while (!stop) {
        auto images = store.ListImages();
        if (!images.ok() || images->size() < 200) {
          errors++;
          continue;
        }
        size_t n = images->size();
        size_t m = most.load();
        while (n > m && !most.compare_exchange_weak(m, n)) {
        }
        scans++;
      }
    });
  }
  ASSERT_TRUE(Eventually([&] { return scans > 30; }));
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  // Readers go on until they have seen every image the child wrote: the last ones lie
  // beyond this process's first 1 MiB map, so seeing them means the resize was adopted.
  EXPECT_TRUE(Eventually([&] { return most.load() == 200 + kGrowths; }));
  stop = true;
  for (auto& r : readers) r.join();
  readers.clear();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  EXPECT_EQ(errors, 0);
  auto all = store.ListImages();
  ASSERT_TRUE(all.ok()) << all.status().message();
  EXPECT_EQ(all->size(), 200u + kGrowths);
  s->reset();
}

}  // namespace
}  // namespace imgfs
