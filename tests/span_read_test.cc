// The span read path (fs/span_cache.h) through a store: reads need no unpacked copy
// and a store without sidecars builds one on first read; the span cache stays within
// budget and serves parallel readers; a damaged span fails only the files in it;
// readers of one span share its decode; read-ahead by listing; layers opened ahead of
// their first read (Warm).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <latch>
#include <set>
#include <thread>

#include "fs/image_view.h"
#include "fs/span_cache.h"
#include "index/seek_index.h"
#include "registry/image_loader.h"
#include "tests/corpus.h"
#include "tests/hold_decode.h"
#include "tests/store_fixture.h"
#include "tests/tar_builder.h"
#include "tests/wait_for.h"

namespace imgfs {
namespace {

using test::Corpus;
using test::HoldDecodeUntilWaiting;
using test::TarBuilder;

TEST(SpanCacheTest, StaysWithinItsBudgetAndKeepsTheRecentlyUsed) {
  SpanCache c(16 * 1000);  // 16 shards of 1000 bytes
  for (uint64_t i = 0; i < 200; i++)
    c.Put(1, i, std::make_shared<const std::string>(400, static_cast<char>(i)));
  EXPECT_LE(c.bytes(), 16u * 1000);
  EXPECT_GT(c.evictions(), 100u);
  EXPECT_TRUE(c.Get(1, 199) != nullptr);  // the newest of its shard stays
  EXPECT_TRUE(c.Get(1, 0) == nullptr);
}

// Through the store: import, drop the sidecars, read.
class SpanReadTest : public test::StoreFixture {
 protected:
  void SetUp() override {
    StoreFixture::SetUp();
    if (HasFatalFailure()) return;
    ::setenv("IMGFS_SEEK_SPAN", "65536", 1);
    TarBuilder t;
    for (int i = 0; i < 40; i++) t.File("f" + std::to_string(i), Corpus(50000, 100 + i));
    auto r = ImportTar(t.Build("gzip"), "span:1");
    ::unsetenv("IMGFS_SEEK_SPAN");
    ASSERT_TRUE(r.ok()) << r.status().message();
    auto v = ImageView::Open(*store_, r->id);
    ASSERT_TRUE(v.ok());
    view_ = *v;
  }
  void TearDown() override {
    view_.reset();
    StoreFixture::TearDown();
  }
  // Flips a bit of the stored blob in the middle of span k's compressed bytes.
  // Flips a bit of span k's compressed bytes: in the middle; or 24 bytes after its
  // checkpoint (past a gzip member's 10-byte header), so that every prefix of the span
  // holds damaged output; or at 7/8 of them, so that its first pieces do not.
  enum class Where { kMiddle, kNearStart, kLastEighth };
  void DamageSpan(const LayerRecord& l, const SeekIndex& idx, size_t k, Where w = Where::kMiddle) {
    uint64_t lo = idx.point(k).in_off, hi = idx.point(k + 1).in_off;
    if (w == Where::kNearStart) hi = lo + 48;
    if (w == Where::kLastEighth) lo = hi - (hi - lo) / 4;
    std::string blob_path = store_->blobs().BlobPath(l.blob);
    ::chmod(blob_path.c_str(), 0644);
    auto fd = OpenFile(blob_path, O_RDWR);
    ASSERT_TRUE(fd.ok());
    char c;
    ASSERT_TRUE(PreadAll(fd->get(), &c, 1, (lo + hi) / 2).ok());
    c ^= 0x20;
    ASSERT_EQ(::pwrite(fd->get(), &c, 1, (lo + hi) / 2), 1);
  }
  std::string Cat(LayerReader& r, int i, Status* st = nullptr) {
    uint32_t n = *view_->tree().Resolve("/f" + std::to_string(i), true);
    std::string out(view_->tree().node(n).size, '\0');
    auto got = view_->Read(r, n, out.data(), out.size(), 0);
    if (st) *st = got.status();
    return got.ok() ? out : "<error>";
  }
  // Imports a one-file image whose layer is uncompressed; *layer is its record.
  void ImportPlain(LayerRecord* layer) {
    TarBuilder t;
    t.File("plain", "uncompressed layer\n");
    auto plain = ImportTar(t.Build("none"), "plain:1");
    ASSERT_TRUE(plain.ok()) << plain.status().message();
    auto pv = ImageView::Open(*store_, plain->id);
    ASSERT_TRUE(pv.ok());
    *layer = (*pv)->layers()[0];
  }
  // Imports a one-file image, "big" (700,000 bytes over several 64 KiB spans).
  std::shared_ptr<const ImageView> ImportBig() {
    ::setenv("IMGFS_SEEK_SPAN", "65536", 1);
    TarBuilder t;
    t.File("big", Corpus(700000, 7));
    auto imp = ImportTar(t.Build("gzip"), "big:1");
    ::unsetenv("IMGFS_SEEK_SPAN");
    EXPECT_TRUE(imp.ok()) << imp.status().message();
    if (!imp.ok()) return nullptr;
    auto v = ImageView::Open(*store_, imp->id);
    EXPECT_TRUE(v.ok());
    return v.ok() ? *v : nullptr;
  }
  // The "big" image with one of its spans (inside the file, of 12 pieces or more)
  // damaged at 7/8 of its compressed bytes.
  struct DamagedBig {
    std::shared_ptr<const ImageView> view;
    std::shared_ptr<const SeekIndex> idx;
    uint32_t node = 0;
    uint64_t base = 0;  // the file's tar offset
    size_t k = 0;       // the damaged span
  };
  void MakeDamagedBig(DamagedBig* d) {
    d->view = ImportBig();
    ASSERT_TRUE(d->view);
    const LayerRecord& l = d->view->layers()[0];
    auto idx = SeekIndex::Open(SeekIndexPath(*store_, l.diff_id), l);
    ASSERT_TRUE(idx.ok()) << idx.status().message();
    d->idx = *idx;
    d->node = *d->view->tree().Resolve("/big", true);
    d->base = d->view->tree().node(d->node).data_offset;
    d->k = d->idx->Find(d->base) + 1;
    while (d->k + 2 < d->idx->count() && d->idx->PrefixCount(d->k) < 12) d->k++;
    ASSERT_LT(d->k + 2, d->idx->count()) << "no span of 12 pieces or more inside the file";
    ASSERT_GE(d->idx->SpanStart(d->k), d->base);
    ASSERT_NO_FATAL_FAILURE(DamageSpan(l, *d->idx, d->k, Where::kLastEighth));
  }
  std::shared_ptr<const ImageView> view_;
};

TEST_F(SpanReadTest, ReadsNeedNoUnpackedCopyAndMissingSidecarsAreBuilt) {
  const LayerRecord& l = view_->layers()[0];
  std::string sidecar = SeekIndexPath(*store_, l.diff_id);
  ASSERT_TRUE(PathExists(sidecar));  // written by the import
  {
    LayerReader r(*store_);
    EXPECT_EQ(Cat(r, 17), Corpus(50000, 117));
    EXPECT_EQ(r.indexes_built(), 0u);
    EXPECT_LE(r.spans_decoded(), 2u);  // 50 KB of a 2 MB layer: one or two 64 KiB spans
    EXPECT_EQ(r.unpack_cache().unpack_count(), 0u);
    EXPECT_FALSE(PathExists(store_->UnpackedPath(l.diff_id)));
  }
  ASSERT_EQ(::unlink(sidecar.c_str()), 0);  // a store from before seek indexes
  LayerReader r(*store_);
  EXPECT_EQ(Cat(r, 3), Corpus(50000, 103));
  EXPECT_EQ(r.indexes_built(), 1u);
  EXPECT_TRUE(PathExists(sidecar));
  EXPECT_FALSE(PathExists(store_->UnpackedPath(l.diff_id)));
}

TEST_F(SpanReadTest, ParallelReadersUnderEvictionGetEveryByteRight) {
  LayerReader r(*store_, 16 * 70000);  // about one span per shard: constant eviction
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; t++) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 30; k++) {
        int i = (t * 7 + k * 13) % 40;
        if (Cat(r, i) != Corpus(50000, 100 + i)) wrong++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(r.span_cache().evictions(), 0u)
      << "decoded " << r.spans_decoded() << " hits " << r.span_cache().hits() << " bytes "
      << r.span_cache().bytes();
  EXPECT_LE(r.span_cache().bytes(), 16u * 70000 + 16u * (256 << 10));
}

TEST_F(SpanReadTest, CorruptionInOneSpanFailsOnlyFilesInIt) {
  const LayerRecord& l = view_->layers()[0];
  auto idx = SeekIndex::Open(SeekIndexPath(*store_, l.diff_id), l);
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  ASSERT_GE((*idx)->count(), 10u);
  size_t k = 10;
  ASSERT_NO_FATAL_FAILURE(DamageSpan(l, **idx, k));
  LayerReader r(*store_);
  int failed = 0;
  for (int i = 0; i < 40; i++) {
    uint32_t n = *view_->tree().Resolve("/f" + std::to_string(i), true);
    uint64_t a = view_->tree().node(n).data_offset, b = a + view_->tree().node(n).size;
    bool in_k = a < (*idx)->SpanEnd(k) && b > (*idx)->SpanStart(k);
    Status st;
    std::string got = Cat(r, i, &st);
    if (in_k && !st.ok()) {
      failed++;
      EXPECT_EQ(st.code(), Status::Code::kCorruption) << "f" << i;
    } else {
      // Outside span k; or in it, but read from a prefix that ends before the damage
      // (prefix values, SeekIndex::DecodeLength): never wrong bytes.
      EXPECT_EQ(got, Corpus(50000, 100 + i)) << "f" << i << ": " << st.message();
    }
    // A file reaching the span's last piece needs all of it: the whole span's check.
    if (in_k && b >= (*idx)->SpanEnd(k)) {
      EXPECT_FALSE(st.ok()) << "f" << i;
    }
  }
  EXPECT_GE(failed, 1);
}

// Readers that meet in a span being decoded wait for that one decode
// (tests/hold_decode.h holds the decoding thread until the others wait).
TEST_F(SpanReadTest, ReadersOfASpanBeingDecodedWaitForThatOneDecode) {
  LayerReader r(*store_);
  std::atomic<int> calls{0};
  constexpr int kThreads = 8;
  HoldDecodeUntilWaiting(r, kThreads - 1, &calls);
  std::atomic<int> wrong{0};
  std::latch go(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&] {
      go.arrive_and_wait();
      if (Cat(r, 21) != Corpus(50000, 121)) wrong++;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  // f21 (50,000 bytes) lies in one or two 64 KiB spans: each decoded once, not 8 times.
  EXPECT_LE(r.spans_decoded(), 2u);
  EXPECT_EQ(calls.load(), static_cast<int>(r.spans_decoded()));
  EXPECT_GE(r.decode_waits(), static_cast<uint64_t>(kThreads - 1));
}

TEST_F(SpanReadTest, ReadersWaitingForADamagedSpanAllGetItsError) {
  const LayerRecord& l = view_->layers()[0];
  auto idx = SeekIndex::Open(SeekIndexPath(*store_, l.diff_id), l);
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  // A file that lies inside one span, and a flipped byte in that span's compressed bytes.
  int file = -1;
  size_t k = 0;
  for (int i = 0; i < 40 && file < 0; i++) {
    uint32_t n = *view_->tree().Resolve("/f" + std::to_string(i), true);
    uint64_t a = view_->tree().node(n).data_offset, b = a + view_->tree().node(n).size;
    size_t s = (*idx)->Find(a);
    if ((*idx)->Find(b - 1) == s && s + 1 < (*idx)->count()) file = i, k = s;
  }
  ASSERT_GE(file, 0);
  ASSERT_NO_FATAL_FAILURE(DamageSpan(l, **idx, k, Where::kNearStart));
  LayerReader r(*store_);
  std::atomic<int> calls{0};
  constexpr int kThreads = 6;
  HoldDecodeUntilWaiting(r, kThreads - 1, &calls);
  std::atomic<int> corrupt{0};
  std::latch go(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&] {
      go.arrive_and_wait();
      Status st;
      Cat(r, file, &st);
      if (st.code() == Status::Code::kCorruption &&
          st.message().find("span " + std::to_string(k)) != std::string::npos)
        corrupt++;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(corrupt.load(), kThreads);
  EXPECT_EQ(calls.load(), 1);  // one decode found the damage; the others got its error
  EXPECT_EQ(r.spans_decoded(), 0u);
  // A failed decode is not remembered: the next read decodes (and fails) again.
  Status st;
  Cat(r, file, &st);
  EXPECT_EQ(st.code(), Status::Code::kCorruption);
  EXPECT_EQ(calls.load(), 2);
}

// A first read of a file decodes only the pieces of its span up to the file's end
// (prefix values); the cache holds that prefix; a read past it decodes the whole span,
// which replaces the prefix; reads within either decode nothing more.
TEST_F(SpanReadTest, AFirstReadDecodesAPrefixAndAReadPastItTheWholeSpan) {
  const LayerRecord& l = view_->layers()[0];
  auto idx = SeekIndex::Open(SeekIndexPath(*store_, l.diff_id), l);
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  ASSERT_EQ((*idx)->piece(), 4096u);
  // A file inside one span that ends a piece or more before the span's end, and the
  // file that holds the span's last byte.
  int first = -1, later = -1;
  size_t k = 0;
  auto range = [&](int i) {
    uint32_t n = *view_->tree().Resolve("/f" + std::to_string(i), true);
    return std::pair<uint64_t, uint64_t>{
        view_->tree().node(n).data_offset,
        view_->tree().node(n).data_offset + view_->tree().node(n).size};
  };
  for (int i = 0; i < 40 && first < 0; i++) {
    auto [a, b] = range(i);
    size_t s = (*idx)->Find(a);
    if ((*idx)->Find(b - 1) != s || s + 1 >= (*idx)->count() || b + 4096 > (*idx)->SpanEnd(s))
      continue;
    for (int j = i + 1; j < 40; j++) {
      auto [c, d] = range(j);
      if (c < (*idx)->SpanEnd(s) && d >= (*idx)->SpanEnd(s)) first = i, later = j, k = s;
    }
  }
  ASSERT_GE(first, 0) << "no file ending a piece before its span's end";
  LayerReader r(*store_);
  r.set_prefetch(false);
  EXPECT_EQ(Cat(r, first), Corpus(50000, 100 + first));
  EXPECT_EQ(r.spans_decoded(), 1u);
  uint64_t len = (*idx)->SpanEnd(k) - (*idx)->SpanStart(k);
  uint64_t end = range(first).second - (*idx)->SpanStart(k);
  EXPECT_EQ(r.span_cache().bytes(), (*idx)->DecodeLength(k, end));
  EXPECT_LT(r.span_cache().bytes(), len);
  EXPECT_EQ(Cat(r, first), Corpus(50000, 100 + first));  // from the prefix
  EXPECT_EQ(r.spans_decoded(), 1u);
  EXPECT_EQ(Cat(r, later), Corpus(50000, 100 + later));  // span k whole, then the next
  EXPECT_GE(r.spans_decoded(), 2u);
  uint64_t decoded = r.spans_decoded();
  EXPECT_EQ(Cat(r, first), Corpus(50000, 100 + first));
  EXPECT_EQ(r.spans_decoded(), decoded);
  auto held = r.span_cache().Peek(1, k);  // the layer's stream is the reader's first
  ASSERT_TRUE(held != nullptr);
  EXPECT_EQ(held->size(), len);
}

// A file read in small pieces (the kernel's 128 KiB reads) decodes each of its spans
// once: the first read of a span decodes it up to the file's end, not to the piece's.
// Files that share a span decode it at most twice (a prefix, then the whole span).
TEST_F(SpanReadTest, AFileReadInSmallPiecesDecodesEachSpanOnce) {
  auto big = ImportBig();
  ASSERT_TRUE(big);
  auto read_all = [](const ImageView& v, LayerReader& r, const std::string& path,
                     std::set<size_t>* spans, const SeekIndex& idx) {
    uint32_t n = *v.tree().Resolve(path, true);
    const TreeNode& t = v.tree().node(n);
    for (uint64_t o = t.data_offset; o < t.data_offset + t.size; o++) spans->insert(idx.Find(o));
    std::string got;
    char buf[4096];
    for (uint64_t off = 0; off < t.size; off += sizeof buf) {
      auto k = v.Read(r, n, buf, sizeof buf, off);
      EXPECT_TRUE(k.ok()) << k.status().message();
      if (!k.ok()) break;
      got.append(buf, *k);
    }
    return got;
  };
  const LayerRecord& bl = big->layers()[0];
  auto bidx = SeekIndex::Open(SeekIndexPath(*store_, bl.diff_id), bl);
  ASSERT_TRUE(bidx.ok()) << bidx.status().message();
  LayerReader r(*store_);
  r.set_prefetch(false);
  std::set<size_t> spans;
  EXPECT_EQ(read_all(*big, r, "/big", &spans, **bidx), Corpus(700000, 7));
  ASSERT_GE(spans.size(), 5u);
  EXPECT_EQ(r.spans_decoded(), spans.size());
  // Four 50,000-byte files of the fixture's image, two or three to a span.
  const LayerRecord& l = view_->layers()[0];
  auto idx = SeekIndex::Open(SeekIndexPath(*store_, l.diff_id), l);
  ASSERT_TRUE(idx.ok()) << idx.status().message();
  LayerReader r2(*store_);
  r2.set_prefetch(false);
  spans.clear();
  for (int i : {3, 4, 5, 6})
    EXPECT_EQ(read_all(*view_, r2, "/f" + std::to_string(i), &spans, **idx),
              Corpus(50000, 100 + i));
  EXPECT_LE(r2.spans_decoded(), 2 * spans.size());
}

// A read before the damage in a span reads, whether or not a shorter prefix of the span
// was decoded first (a later read then decodes the whole span, which fails its check),
// and though the file goes on past the damage (its reads ask for the span up to the
// file's end); a read reaching the damage fails. Through ImageView::Read, the mount's
// way (the file's end given), and through the layer's stream with none.
TEST_F(SpanReadTest, AReadBeforeTheDamageInASpanReadsWhateverTheCacheHolds) {
  DamagedBig d;
  ASSERT_NO_FATAL_FAILURE(MakeDamagedBig(&d));
  const auto& big = d.view;
  const LayerRecord& l = big->layers()[0];
  uint32_t node = d.node;
  uint64_t base = d.base;
  uint64_t start = d.idx->SpanStart(d.k), end = d.idx->SpanEnd(d.k), q = d.idx->piece();
  std::string want = Corpus(700000, 7);
  for (bool through_view : {true, false}) {
    for (bool prefix_first : {false, true}) {
      SCOPED_TRACE(std::string(through_view ? "ImageView::Read" : "LayerReader::Read") +
                   (prefix_first ? ", a first piece decoded before" : ", nothing decoded before"));
      LayerReader r(*store_);
      r.set_prefetch(false);
      auto read = [&](uint64_t tar_off, std::string* buf) {
        return through_view ? big->Read(r, node, buf->data(), buf->size(), tar_off - base)
                            : r.Read(l, buf->data(), buf->size(), tar_off);
      };
      std::string buf(10, '\0');
      if (prefix_first) {
        auto a = read(start + 10, &buf);
        ASSERT_TRUE(a.ok()) << a.status().message();
      }
      auto b = read(start + 2 * q + 10, &buf);
      ASSERT_TRUE(b.ok()) << b.status().message();
      EXPECT_EQ(buf, want.substr(start + 2 * q + 10 - base, 10));
      auto c = read(end - 10, &buf);
      ASSERT_FALSE(c.ok());
      EXPECT_EQ(c.status().code(), Status::Code::kCorruption) << c.status().message();
    }
  }
}

// A reader that waits for another's decode of a damaged span, which fails, still gets
// its bytes when they lie before the damage: it decodes its own prefix.
TEST_F(SpanReadTest, AWaiterBeforeTheDamageGetsItsBytesWhenTheOwnersDecodeFails) {
  DamagedBig d;
  ASSERT_NO_FATAL_FAILURE(MakeDamagedBig(&d));
  const auto& big = d.view;
  const LayerRecord& l = big->layers()[0];
  uint32_t node = d.node;
  uint64_t base = d.base;
  uint64_t start = d.idx->SpanStart(d.k), end = d.idx->SpanEnd(d.k);
  LayerReader r(*store_);
  r.set_prefetch(false);
  std::atomic<int> calls{0};
  HoldDecodeUntilWaiting(r, 1, &calls);
  Status owner;
  std::thread b([&] {  // the owner: the span's end, past the damage
    std::string buf(10, '\0');
    owner = r.Read(l, buf.data(), buf.size(), end - 10).status();
  });
  test::WaitFor([&] { return calls.load() >= 1; });
  std::string buf(10, '\0');  // the waiter: through the file, before the damage
  auto a = big->Read(r, node, buf.data(), buf.size(), start + 10 - base);
  b.join();
  EXPECT_EQ(owner.code(), Status::Code::kCorruption) << owner.message();
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(buf, Corpus(700000, 7).substr(start + 10 - base, 10));
  EXPECT_GE(r.decode_waits(), 1u);
}

using test::WaitFor;

TEST_F(SpanReadTest, PrefetchDecodesAheadAndLaterReadsDecodeNothing) {
  LayerReader r(*store_);
  const LayerRecord& l = view_->layers()[0];
  auto s = r.Open(l);
  ASSERT_TRUE(s.ok()) << s.status().message();
  ASSERT_NE((*s)->index(), nullptr);
  auto node = [&](int i) {
    return view_->tree().node(*view_->tree().Resolve("/f" + std::to_string(i), true));
  };
  uint64_t a = node(5).data_offset, b = node(9).data_offset + node(9).size;
  const SeekIndex& x = *(*s)->index();
  uint64_t want = x.Find(b - 1) - x.Find(a) + 1;
  r.Prefetch(*s, a, b - a);
  ASSERT_TRUE(WaitFor([&] { return r.spans_prefetched() >= want; }))
      << "prefetched " << r.spans_prefetched() << " of " << want;
  EXPECT_EQ(r.spans_prefetched(), want);
  uint64_t decoded = r.spans_decoded();
  EXPECT_EQ(decoded, want);
  for (int i = 5; i <= 9; i++) EXPECT_EQ(Cat(r, i), Corpus(50000, 100 + i)) << "f" << i;
  EXPECT_EQ(r.spans_decoded(), decoded);  // every span came from the cache
  r.Prefetch(*s, a, b - a);               // all cached: nothing queued
  EXPECT_EQ(r.prefetch_queued(), 0u);
  EXPECT_TRUE(r.Prefetch(*s, a, 1));  // not full: a caller goes on
  r.set_prefetch(false);
  EXPECT_FALSE(r.Prefetch(*s, 0, l.size));
  EXPECT_EQ(r.prefetch_queued(), 0u);
}

TEST_F(SpanReadTest, PrefetchQueuesAtMostAQuarterOfTheCacheAndNothingWhenItIsSmall) {
  const LayerRecord& l = view_->layers()[0];
  {
    LayerReader r(*store_, 7 * 65536);  // under 8 spans: no read-ahead
    auto s = r.Open(l);
    ASSERT_TRUE(s.ok());
    EXPECT_TRUE(r.Prefetch(*s, 0, l.size));  // nothing to queue, but not full
    EXPECT_EQ(r.prefetch_queued(), 0u);
    EXPECT_EQ(r.spans_decoded(), 0u);
  }
  LayerReader r(*store_, 64 * 65536);  // a quarter: 16 spans of 64 KiB
  std::atomic<bool> release{false};
  std::atomic<int> calls{0};
  r.set_decode_hook([&](size_t) {
    calls++;
    WaitFor([&] { return release.load(); });
  });
  auto s = r.Open(l);
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(r.Prefetch(*s, 0, l.size));  // the 2 MB layer, 31+ spans: the queue is full
  ASSERT_TRUE(WaitFor([&] { return calls.load() == 1; }));  // the helper holds one span
  // Spans 0..q were queued (0 is with the helper): they fit in a quarter, one more would not.
  size_t q = r.prefetch_queued();
  const SeekIndex& x = *(*s)->index();
  ASSERT_LT(q + 1, x.count());
  EXPECT_LE(x.SpanEnd(q), 64u * 65536 / 4) << q;
  EXPECT_GT(x.SpanEnd(q + 1), 64u * 65536 / 4) << q;
  release = true;
  ASSERT_TRUE(WaitFor([&] { return r.prefetch_queued() == 0 && r.spans_prefetched() == q + 1; }));
  EXPECT_EQ(Cat(r, 0), Corpus(50000, 100));
}

TEST_F(SpanReadTest, ReadAheadUnderEvictionWithParallelReadersGetsEveryByteRight) {
  LayerReader r(*store_, 8 * 65536);  // read-ahead on, about half a span per shard
  auto s = r.Open(view_->layers()[0]);
  ASSERT_TRUE(s.ok());
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; t++) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 25; k++) {
        int i = (t * 11 + k * 7) % 40;
        uint32_t n = *view_->tree().Resolve("/f" + std::to_string((i + 1) % 40), true);
        r.Prefetch(*s, view_->tree().node(n).data_offset, 3 * 50000);
        if (Cat(r, i) != Corpus(50000, 100 + i)) wrong++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(r.span_cache().evictions(), 0u);
  // The helper took up queued spans. Whether it decoded any itself (spans_prefetched)
  // is a race with six readers of the same spans, lost now and then on a loaded machine.
  ASSERT_TRUE(WaitFor([&] { return r.prefetch_queued() == 0; }));
  EXPECT_GT(r.prefetch_fetches(), 0u);
  EXPECT_LE(r.span_cache().bytes(), 8u * 65536 + 16u * (256 << 10));
}

TEST_F(SpanReadTest, ForgettingALayerDropsItsQueuedReadAhead) {
  const LayerRecord& l = view_->layers()[0];
  LayerReader r(*store_);
  std::atomic<bool> release{false};
  std::atomic<int> calls{0};
  r.set_decode_hook([&](size_t) {
    calls++;
    WaitFor([&] { return release.load(); });
  });
  auto s = r.Open(l);
  ASSERT_TRUE(s.ok());
  r.Prefetch(*s, 0, l.size);
  ASSERT_TRUE(WaitFor([&] { return calls.load() == 1; }));  // the helper holds span 0
  EXPECT_GE(r.prefetch_queued(), 5u);
  r.Forget(l.diff_id.hex());
  EXPECT_EQ(r.prefetch_queued(), 0u);
  release = true;
}

// Warm opens a layer's blob and sidecar on the helper thread. Shown by taking the
// sidecar away afterwards: the first read still uses the index opened (mapped) before,
// and builds none.
TEST_F(SpanReadTest, WarmOpensALayerAheadAndItsFirstReadFindsItOpen) {
  const LayerRecord& l = view_->layers()[0];
  std::string sidecar = SeekIndexPath(*store_, l.diff_id);
  LayerReader r(*store_);
  r.Warm({l, l, l});  // a layer listed three times (the repeats find it open)
  ASSERT_TRUE(test::WaitFor([&] { return r.layers_warmed() >= 1; }));
  ASSERT_EQ(::unlink(sidecar.c_str()), 0);
  EXPECT_EQ(Cat(r, 30), Corpus(50000, 130));
  EXPECT_EQ(r.indexes_built(), 0u);
  EXPECT_FALSE(PathExists(sidecar));
  EXPECT_EQ(r.layers_warmed(), 1u);
  EXPECT_EQ(r.unpack_cache().unpack_count(), 0u);
  // Without Warm the same read builds the sidecar again (the control).
  LayerReader cold(*store_);
  EXPECT_EQ(Cat(cold, 30), Corpus(50000, 130));
  EXPECT_EQ(cold.indexes_built(), 1u);
  EXPECT_EQ(cold.layers_warmed(), 0u);
}

// What Warm leaves to the first read: a sidecar to build, a whole-layer unpack. The
// helper thread takes layers in order, so a layer warmed after them shows they were
// taken up.
TEST_F(SpanReadTest, WarmNeverBuildsASidecarOrUnpacksALayer) {
  const LayerRecord& gz = view_->layers()[0];
  LayerRecord none;
  ASSERT_NO_FATAL_FAILURE(ImportPlain(&none));
  ASSERT_EQ(none.compression, Compression::kNone);
  std::string sidecar = SeekIndexPath(*store_, gz.diff_id);
  ASSERT_EQ(::unlink(sidecar.c_str()), 0);  // a store from before seek indexes
  {
    LayerReader r(*store_);
    r.Warm({gz, none});
    ASSERT_TRUE(test::WaitFor([&] { return r.layers_warmed() >= 1; }));
    EXPECT_EQ(r.layers_warmed(), 1u);  // the uncompressed layer only
    EXPECT_EQ(r.indexes_built(), 0u);
    EXPECT_FALSE(PathExists(sidecar));
  }
  // -o whole_layers: opening a compressed layer means unpacking it, so Warm does not.
  LayerReader whole(*store_, 0, /*use_index=*/false);
  whole.Warm({gz, none});
  ASSERT_TRUE(test::WaitFor([&] { return whole.layers_warmed() >= 1; }));
  EXPECT_EQ(whole.layers_warmed(), 1u);
  EXPECT_EQ(whole.unpack_cache().unpack_count(), 0u);
  EXPECT_FALSE(PathExists(store_->UnpackedPath(gz.diff_id)));
  // With read-ahead off nothing is warmed; reads work as before.
  LayerReader off(*store_);
  off.set_prefetch(false);
  off.Warm({none});
  EXPECT_EQ(Cat(off, 4), Corpus(50000, 104));
  EXPECT_EQ(off.indexes_built(), 1u);
  EXPECT_EQ(off.layers_warmed(), 0u);
}

// StreamForPrefetch, the read-ahead's open: never a sidecar build or an unpack; on a
// thread that may not wait (wait=false) only a stream open already, else *busy; a layer
// with nothing to read ahead in is remembered, so such a thread is not sent away again.
TEST_F(SpanReadTest, StreamForPrefetchOpensOnlyWhatIsQuickAndSaysBusyWhereItWouldWait) {
  const LayerRecord& gz = view_->layers()[0];
  bool busy = false;
  {
    LayerReader r(*store_);
    EXPECT_EQ(r.StreamForPrefetch(gz, /*wait=*/false, &busy), nullptr);
    EXPECT_TRUE(busy);  // not open: opening reads files
    auto s = r.StreamForPrefetch(gz, /*wait=*/true, &busy);
    ASSERT_NE(s, nullptr);
    EXPECT_FALSE(busy);
    EXPECT_NE(s->index(), nullptr);
    EXPECT_EQ(r.StreamForPrefetch(gz, /*wait=*/false, &busy), s);  // open now
    EXPECT_FALSE(busy);
  }
  std::string sidecar = SeekIndexPath(*store_, gz.diff_id);
  ASSERT_EQ(::unlink(sidecar.c_str()), 0);  // a store from before seek indexes
  {
    LayerReader r(*store_);
    EXPECT_EQ(r.StreamForPrefetch(gz, /*wait=*/true, &busy), nullptr);
    EXPECT_FALSE(busy);
    EXPECT_EQ(r.indexes_built(), 0u);
    EXPECT_FALSE(PathExists(sidecar));
    EXPECT_EQ(r.StreamForPrefetch(gz, /*wait=*/false, &busy), nullptr);
    EXPECT_FALSE(busy);                         // remembered: nothing to read ahead in
    EXPECT_EQ(Cat(r, 30), Corpus(50000, 130));  // the read builds the sidecar
    EXPECT_EQ(r.indexes_built(), 1u);
    EXPECT_NE(r.StreamForPrefetch(gz, /*wait=*/false, &busy), nullptr);  // and opens it
  }
  LayerReader whole(*store_, 0, /*use_index=*/false);  // -o whole_layers
  EXPECT_EQ(whole.StreamForPrefetch(gz, /*wait=*/true, &busy), nullptr);
  EXPECT_EQ(whole.unpack_cache().unpack_count(), 0u);
  EXPECT_FALSE(PathExists(store_->UnpackedPath(gz.diff_id)));
}

// A lazily pulled layer (ROOT/lazy/<blob hex>/ exists) is left to its first read, even
// when its blob and sidecar are local: that read decides between the lazy blob and the
// completed one (fs/lazy_blob.h), which a warm must not settle ahead of it.
TEST_F(SpanReadTest, WarmLeavesALazyLayerToItsFirstRead) {
  const LayerRecord& gz = view_->layers()[0];
  LayerRecord none;
  ASSERT_NO_FATAL_FAILURE(ImportPlain(&none));
  std::string lazy = LazyDir::For(store_->root(), gz.blob).dir;
  ASSERT_TRUE(MakeDirs(lazy).ok());
  LayerReader r(*store_);
  r.Warm({gz, none});  // taken in order: once `none` is warmed, gz was passed over
  ASSERT_TRUE(test::WaitFor([&] { return r.layers_warmed() >= 1; }));
  // Had the warm opened gz, its read would find the stream open; it builds the
  // sidecar instead (as WarmOpensALayerAhead's control does).
  std::string sidecar = SeekIndexPath(*store_, gz.diff_id);
  ASSERT_EQ(::unlink(sidecar.c_str()), 0);
  EXPECT_EQ(Cat(r, 30), Corpus(50000, 130));
  EXPECT_EQ(r.indexes_built(), 1u);
  EXPECT_EQ(r.layers_warmed(), 1u);
}

// A layer forgotten while its Warm waits in the queue is not opened by it.
TEST_F(SpanReadTest, ForgettingALayerDropsItsQueuedWarm) {
  const LayerRecord& gz = view_->layers()[0];
  std::vector<LayerRecord> more;
  for (int k = 0; k < 2; k++) {
    TarBuilder t;
    t.File("m", Corpus(70000, 900 + k));
    auto im = ImportTar(t.Build("gzip"), "more:" + std::to_string(k));
    ASSERT_TRUE(im.ok()) << im.status().message();
    auto v = ImageView::Open(*store_, im->id);
    ASSERT_TRUE(v.ok());
    more.push_back((*v)->layers()[0]);
  }
  LayerReader r(*store_);
  std::atomic<bool> release{false};
  std::atomic<int> calls{0};
  r.set_decode_hook([&](size_t) {
    calls++;
    test::WaitFor([&] { return release.load(); });
  });
  auto s = r.Open(gz);
  ASSERT_TRUE(s.ok());
  r.Prefetch(*s, 0, 1);
  ASSERT_TRUE(test::WaitFor([&] { return calls.load() == 1; }));  // the helper is held
  r.Warm({more[0]});
  r.Forget(more[0].diff_id.hex());
  r.Warm({more[1]});
  release = true;
  ASSERT_TRUE(test::WaitFor([&] { return r.layers_warmed() >= 1; }));
  // more[1] was warmed, more[0] was not: without its sidecar, its first read builds one.
  std::string sidecar = SeekIndexPath(*store_, more[0].diff_id);
  ASSERT_EQ(::unlink(sidecar.c_str()), 0);
  std::string got(100, '\0');
  auto n = r.Read(more[0], got.data(), got.size(), 512);
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(got, Corpus(70000, 900).substr(0, 100));
  EXPECT_EQ(r.indexes_built(), 1u);
  EXPECT_EQ(r.layers_warmed(), 1u);
}

// An uncompressed layer warmed before the mount pins it: one fd for its blob, not two.
TEST_F(SpanReadTest, AWarmedUncompressedLayerHoldsOneBlobFd) {
  LayerRecord none;
  ASSERT_NO_FATAL_FAILURE(ImportPlain(&none));
  std::string blob = store_->blobs().BlobPath(none.blob);
  auto fds_on_blob = [&] {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
      std::error_code ec;
      if (std::filesystem::read_symlink(e.path(), ec) == blob) n++;
    }
    return n;
  };
  LayerReader r(*store_);
  r.Warm({none});
  ASSERT_TRUE(test::WaitFor([&] { return r.layers_warmed() == 1; }));
  ASSERT_TRUE(r.Pin(none).ok());
  auto s = r.Open(none);
  ASSERT_TRUE(s.ok()) << s.status().message();
  ASSERT_NE((*s)->fd(), nullptr);
  EXPECT_EQ(fds_on_blob(), 1);
}

// Warm and Forget racing readers of the same layer (a mount's first lookups, an rmi):
// every read gets every byte right.
TEST_F(SpanReadTest, WarmAndForgetRacingReadersGetEveryByteRight) {
  const LayerRecord& l = view_->layers()[0];
  LayerReader r(*store_, 8 * 65536);
  std::atomic<bool> stop{false};
  std::atomic<int> wrong{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; t++) {
    readers.emplace_back([&, t] {
      for (int k = 0; k < 200 && (k < 10 || !stop.load()); k++) {
        int i = (t * 13 + k * 7) % 40;
        if (Cat(r, i) != Corpus(50000, 100 + i)) wrong++;
      }
    });
  }
  for (int k = 0; k < 50; k++) {
    r.Warm({l});
    if (k % 3 == 0) r.Forget(l.diff_id.hex());
    std::this_thread::yield();
  }
  stop = true;
  for (auto& th : readers) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

}  // namespace
}  // namespace imgfs
