#include "registry/lazy_pull.h"

#include <fcntl.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <set>
#include <thread>
#include <utility>

#include "index/file_util.h"
#include "index/layer_indexer.h"
#include "index/lazy_layer.h"
#include "index/lazy_virtual.h"
#include "index/pushed_source.h"
#include "registry/estargz_toc.h"
#include "registry/lazy_fetch.h"
#include "registry/multipart_ranges.h"
#include "registry/zstd_chunked.h"

namespace imgfs {

bool IsLazyLayer(const Store& store, const LayerRecord& layer) {
  return !store.blobs().Has(layer.blob) && LazyDir::For(store.root(), layer.blob).Exists();
}

Result<std::unique_ptr<ByteSource>> OpenLazyCompletion(const Store& store, const Descriptor& desc,
                                                       std::shared_ptr<RangeFetcher> fetcher,
                                                       std::shared_ptr<uint64_t> local,
                                                       uint64_t from,
                                                       const LazyCompletionOptions& opt) {
  LazyDir dir = LazyDir::For(store.root(), desc.digest);
  if (!dir.Exists() || !dir.BrokenReason().empty())
    return Status::NotFound("no lazy state to complete from");
  IMGFS_ASSIGN_OR_RETURN(RangeMap ranges, dir.LoadRanges(desc.size));
  from = std::min(from, desc.size);
  if (from > 0) ranges.Remove(0, from);
  // Short local ranges are fetched again with the gaps around them (a request saved is
  // worth more than the bytes), unless they are all that is left of the blob.
  RangeMap reuse;
  for (const auto& [start, end] : ranges.ranges()) {
    if (end - start >= opt.min_reused || (start == from && end == desc.size)) reuse.Add(start, end);
  }
  if (reuse.Total() == 0) return Status::NotFound("nothing of the blob is worth reusing");
  if (reuse.Missing(from, desc.size).size() > opt.max_gaps)
    return Status::NotFound("what is local is too scattered to reuse");
  IMGFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(dir.data(), O_RDONLY));
  auto data = std::make_shared<UniqueFd>(std::move(fd));
  uint64_t size = desc.size;
  auto produce = [data, reuse = std::move(reuse), fetcher, local, size,
                  from](const PushedSource::Push& push) -> Status {
    const Status stopped = Status::Unavailable("blob download stopped");
    uint64_t pos = from;  // the next byte of the blob to hand on
    std::string buf;
    auto from_disk = [&](uint64_t end) -> Status {
      while (pos < end) {
        buf.resize(static_cast<size_t>(std::min<uint64_t>(end - pos, 1 << 20)));
        IMGFS_RETURN_IF_ERROR(
            PreadAll(data->get(), buf.data(), buf.size(), static_cast<off_t>(pos)));
        if (!push(buf)) return stopped;
        pos += buf.size();
        if (local) *local += buf.size();
      }
      return Status::Ok();
    };
    // [pos, end) from the registry. A server that ignores Range (200) streams the blob
    // on to its end: that response is then used for all of the rest (local bytes
    // included), rather than asking again for each gap and being sent the blob each time.
    auto fetch = [&](uint64_t end) -> Status {
      Status st = fetcher->Fetch(pos, end - pos, [&](uint64_t at, const char* p, size_t n) {
        if (at > pos) return Status::Corruption("registry skipped bytes of a range");
        if (at + n <= pos) return Status::Ok();  // handed on already
        size_t skip = static_cast<size_t>(pos - at);
        size_t take = static_cast<size_t>(std::min<uint64_t>(n - skip, size - pos));
        if (!push(std::string_view(p + skip, take))) return stopped;
        pos += take;
        return Status::Ok();
      });
      if (pos >= end) return Status::Ok();  // (an error after that only cut a bonus short)
      return st.ok() ? Status::Unavailable("registry sent less than the range asked for") : st;
    };
    // Gaps of 1 MiB and more stream; smaller ones (a lazy pull leaves many, between tar
    // headers) go in multi-range requests of at most 256 ranges and 8 MiB, the local
    // bytes between them read from disk in order.
    constexpr uint64_t kStreamGap = 1 << 20, kBatchBytes = 8 << 20;
    constexpr size_t kBatchRanges = 256;
    auto gaps = reuse.Missing(pos, size);
    for (size_t i = 0; i < gaps.size();) {
      if (gaps[i].second <= pos) {  // streamed already (a 200)
        i++;
        continue;
      }
      auto [gs, ge] = gaps[i];
      gs = std::max(gs, pos);
      if (ge - gs >= kStreamGap) {
        IMGFS_RETURN_IF_ERROR(from_disk(gs));
        IMGFS_RETURN_IF_ERROR(fetch(ge));
        i++;
        continue;
      }
      std::vector<std::pair<uint64_t, uint64_t>> batch;  // offset, length
      uint64_t bytes = 0;
      for (; i < gaps.size() && batch.size() < kBatchRanges; i++) {
        uint64_t bs = std::max(gaps[i].first, pos), len = gaps[i].second - bs;
        if (len >= kStreamGap || (!batch.empty() && bytes + len > kBatchBytes)) break;
        batch.emplace_back(bs, len);
        bytes += len;
      }
      IMGFS_RETURN_IF_ERROR(from_disk(batch[0].first));
      const uint64_t batch_end = batch.back().first + batch.back().second;
      const Status enough = Status::Unavailable("ranges complete");
      size_t gi = 0;  // the gap the next bytes belong to
      Status st = fetcher->FetchRanges(batch, [&](uint64_t at, const char* p, size_t n) {
        const uint64_t base = at, end = at + n;
        while (at < end && gi < batch.size()) {
          uint64_t bs = batch[gi].first, be = bs + batch[gi].second;
          if (pos >= be) {
            gi++;
            continue;
          }
          if (at > std::max(pos, bs))
            return Status::Corruption("registry skipped bytes of a range");
          if (end <= bs) return Status::Ok();  // local bytes: read from disk
          IMGFS_RETURN_IF_ERROR(from_disk(bs));
          if (end <= pos) return Status::Ok();  // handed on already
          size_t take = static_cast<size_t>(std::min(end, be) - pos);
          if (!push(std::string_view(p + (pos - base), take))) return stopped;
          pos += take;
          at = pos;
        }
        // Past the batch (a server that ignores Range sends on): stop it there.
        return pos >= batch_end ? enough : Status::Ok();
      });
      if (pos < batch_end)
        return st.ok() ? Status::Unavailable("registry sent less than the ranges asked for") : st;
    }
    IMGFS_RETURN_IF_ERROR(from_disk(size));
    return Status::Ok();
  };
  return std::unique_ptr<ByteSource>(new PushedSource(std::move(produce), 2 << 20));
}

namespace {

// eStargz: the footer and the TOC member (two Range requests), the TOC checked against
// the toc.digest annotation before it is parsed (estargz_toc.h); the entry table and
// chunk map at synthetic content offsets (index/lazy_virtual.h). The fetched footer and
// TOC bytes are kept (the TOC file then reads with no request).
Result<LazyLayerFetched> FetchEstargzLayer(RegistryClient& client, const std::string& repo,
                                           bool insecure, const Descriptor& desc,
                                           const std::string& toc_digest,
                                           const std::function<bool()>& cancelled) {
  std::string what = "layer " + desc.digest.str();
  auto want = Digest::Parse(toc_digest);
  if (!want.ok())
    return want.status().WithContext(what + ": annotation " + estargz::kTocDigestAnnotation);
  std::vector<std::pair<uint64_t, std::string>> local;
  auto reader = [&](uint64_t off, uint64_t len) -> Result<std::string> {
    if (cancelled && cancelled()) return Status::Unavailable("lazy pull stopped");
    IMGFS_ASSIGN_OR_RETURN(
        std::string b, FetchBlobRange(client, repo, desc.digest, desc.size, off, len, cancelled));
    local.emplace_back(off, b);
    return b;
  };
  auto toc = estargz::ReadEstargzToc(desc.digest, desc.size, reader, *want);
  if (!toc.ok()) return toc.status().WithContext(what);
  auto v = VirtualLayerFromToc(*toc);
  if (!v.ok()) return v.status().WithContext(what);
  LazyLayerFetched out;
  out.source = LazySource{client.host(), repo, insecure};
  out.map = std::move(v->map);
  out.local = std::move(local);
  out.info.entries = std::move(v->entries);
  out.info.tar_size = v->size;
  return out;
}

}  // namespace

Result<LazyLayerInfo> PrepareLazyLayer(Store& store, RegistryClient& client,
                                       const std::string& repo, bool insecure,
                                       const Descriptor& desc) {
  IMGFS_ASSIGN_OR_RETURN(LazyLayerFetched f, FetchLazyLayer(client, repo, insecure, desc));
  return StoreLazyLayer(store, desc, std::move(f));
}

Result<LazyLayerInfo> StoreLazyLayer(Store& store, const Descriptor& desc,
                                     LazyLayerFetched fetched) {
  IMGFS_RETURN_IF_ERROR(
      LazyDir::Create(store.root(), desc.digest, fetched.source, fetched.map, fetched.local)
          .WithContext("layer " + desc.digest.str()));
  return std::move(fetched.info);
}

Result<LazyLayerFetched> FetchLazyLayer(RegistryClient& client, const std::string& repo,
                                        bool insecure, const Descriptor& desc,
                                        const std::function<bool()>& cancelled) {
  std::string what = "layer " + desc.digest.str();
  const Status stopped = Status::Unavailable(what + ": lazy pull stopped");
  if (auto it = desc.annotations.find(estargz::kTocDigestAnnotation);
      it != desc.annotations.end() && !IsZstdChunked(desc.annotations))
    return FetchEstargzLayer(client, repo, insecure, desc, it->second, cancelled);
  if (!IsZstdChunked(desc.annotations))
    return Status::Unsupported(what + ": neither zstd:chunked nor eStargz (no table of contents)");
  IMGFS_ASSIGN_OR_RETURN(ZstdChunkedLayout lay,
                         ParseZstdChunkedLayout(desc.annotations, desc.size));
  if (cancelled && cancelled()) return stopped;
  IMGFS_ASSIGN_OR_RETURN(std::string toc_c,
                         FetchBlobRange(client, repo, desc.digest, desc.size, lay.toc_offset,
                                        lay.toc_length, cancelled));
  Digest got = Sha256Of(toc_c);
  if (!(got == lay.toc_digest)) {
    return Status::Corruption(what + ": table of contents hashes to " + got.str() +
                              ", the manifest says " + lay.toc_digest.str());
  }
  IMGFS_ASSIGN_OR_RETURN(std::string toc_json, DecompressZstd(toc_c, lay.toc_size));
  auto parsed = ParseZstdChunkedToc(toc_json, desc.digest, desc.size, lay.toc_digest);
  if (!parsed.ok()) return parsed.status().WithContext(what);
  std::optional<Digest> ts_digest = lay.tarsplit_digest;
  if (!ts_digest) ts_digest = parsed->tarsplit_digest;  // the TOC is verified: trusted
  LayerToc& toc = parsed->toc;
  std::vector<std::pair<uint64_t, std::string>> local;  // blob bytes fetched, kept
  std::vector<TarSplitSegment> segments;
  const bool from_tarsplit = lay.has_tarsplit && ts_digest;  // headers under a digest
  if (from_tarsplit) {
    if (cancelled && cancelled()) return stopped;
    IMGFS_ASSIGN_OR_RETURN(std::string ts_c,
                           FetchBlobRange(client, repo, desc.digest, desc.size, lay.tarsplit_offset,
                                          lay.tarsplit_length, cancelled));
    got = Sha256Of(ts_c);
    if (!(got == *ts_digest)) {
      return Status::Corruption(what + ": tar-split hashes to " + got.str() + ", expected " +
                                ts_digest->str());
    }
    IMGFS_ASSIGN_OR_RETURN(std::string ts_json, DecompressZstd(ts_c, lay.tarsplit_size));
    auto segs = ParseTarSplit(ts_json);
    if (!segs.ok()) return segs.status().WithContext(what);
    segments = std::move(*segs);
    local.emplace_back(lay.tarsplit_offset, std::move(ts_c));
  } else {
    // No tar-split: the tar headers are the blob bytes between file contents. The gaps
    // are sorted and disjoint (HeaderGaps refuses a TOC that would make them otherwise):
    // the joining and DecodeHeaderGaps below rely on it.
    auto gaps = HeaderGaps(toc, lay.toc_offset);
    if (!gaps.ok()) return gaps.status().WithContext(what);
    // Ranges: gaps closer than kJoin are fetched as one range (the file contents
    // between them come along and are kept: small files become local). The ranges go
    // in multi-range requests of a few hundred each (registry/multipart_ranges.h), up
    // to 4 in parallel; a registry without multi-range gets them one by one.
    // IMGFS_LAZY_JOIN (bytes) overrides the join and IMGFS_LAZY_MULTIRANGE=0 sends one
    // range a request, for measurements (bench/lazy.sh).
    // Bounded: the header ranges themselves at most kMaxTarSplitBytes (as a tar-split),
    // and the file contents joined in at most kMaxJoined more (a layer of many small
    // files would otherwise bring the whole blob into memory); past that, no joining.
    uint64_t kJoin = 4 << 10;
    if (const char* j = std::getenv("IMGFS_LAZY_JOIN"); j && *j)
      kJoin = std::strtoull(j, nullptr, 10);
    constexpr uint64_t kMaxJoined = 256ull << 20;
    uint64_t gap_bytes = 0;
    for (const BlobRange& g : *gaps) gap_bytes += g.length;
    if (gap_bytes > kMaxTarSplitBytes) {
      return Status::Unsupported(what + ": its tar headers take " + std::to_string(gap_bytes) +
                                 " bytes of the blob, more than a lazy pull fetches");
    }
    auto join = [&](uint64_t within) {
      std::vector<BlobRange> out;
      for (const BlobRange& g : *gaps) {
        if (g.length == 0) continue;
        if (!out.empty() && g.offset - (out.back().offset + out.back().length) <= within) {
          out.back().length = g.offset + g.length - out.back().offset;
        } else {
          out.push_back(g);
        }
      }
      return out;
    };
    std::vector<BlobRange> reqs = join(kJoin);
    uint64_t req_bytes = 0;
    for (const BlobRange& r : reqs) req_bytes += r.length;
    if (req_bytes - gap_bytes > kMaxJoined) reqs = join(0);
    std::vector<std::vector<BlobRange>> batches = BatchRanges(reqs);
    if (const char* m = std::getenv("IMGFS_LAZY_MULTIRANGE"); m && std::string_view(m) == "0") {
      batches.clear();  // one range a request, as before multi-range (measurements)
      for (const BlobRange& g : reqs) batches.push_back({g});
    }
    std::vector<Result<std::vector<std::string>>> fetched(batches.size(),
                                                          Status::Unavailable("not fetched"));
    std::atomic<size_t> next{0};
    auto worker = [&] {
      for (size_t i; (i = next.fetch_add(1)) < batches.size();) {
        fetched[i] = cancelled && cancelled()
                         ? Result<std::vector<std::string>>(stopped)
                         : FetchBlobRanges(client, repo, desc.digest, desc.size, batches[i],
                                           nullptr, cancelled);
      }
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < 4 && t < static_cast<int>(batches.size()); t++)
      threads.emplace_back(worker);
    for (auto& t : threads) t.join();
    std::vector<std::string> bodies;
    for (auto& f : fetched) {
      if (!f.ok()) return f.status().WithContext(what);
      for (std::string& b : *f) bodies.emplace_back(std::move(b));
    }
    auto decoded = DecodeHeaderGaps(*gaps, reqs, bodies);
    if (!decoded.ok()) return decoded.status().WithContext(what);
    for (size_t i = 0; i < reqs.size(); i++)
      local.emplace_back(reqs[i].offset, std::move(bodies[i]));
    auto segs = SegmentsFromGaps(toc, std::move(*decoded));
    if (!segs.ok()) return segs.status().WithContext(what);
    segments = std::move(*segs);
  }
  auto headers = ApplyTarSplit(toc, std::move(segments));
  if (!headers.ok()) return headers.status().WithContext(what);
  // The ordinary indexer over the headers (contents zeroed): the entry table a full
  // pull makes, names and attributes from the same tar headers.
  auto idx = IndexTarStream(headers->get(), /*hash=*/false);
  if (!idx.ok()) return idx.status().WithContext(what + " (tar-split headers)");
  if (idx->uncompressed_size != toc.tar_size)
    return Status::Corruption(what + ": tar-split size mismatch");
  // Cross-check: every file with content is a TOC file at the same tar offset.
  std::set<std::pair<uint64_t, uint64_t>> toc_files, tar_files;
  for (const TocEntry& e : toc.entries)
    if (e.type == EntryType::kFile && e.size > 0) toc_files.emplace(e.tar_offset, e.size);
  for (const LayerEntry& e : idx->entries)
    if (e.type == EntryType::kFile && e.size > 0) tar_files.emplace(e.data_offset, e.size);
  if (toc_files != tar_files) {
    return Status::Corruption(what + ": the table of contents and the tar-split disagree (" +
                              std::to_string(toc_files.size()) + " vs " +
                              std::to_string(tar_files.size()) + " files with content)");
  }
  auto map = ChunkMapFromToc(toc);
  if (!map.ok()) return map.status().WithContext(what);
  IMGFS_RETURN_IF_ERROR(MatchTocToTar(toc, idx->entries, from_tarsplit).WithContext(what));
  local.emplace_back(lay.toc_offset, std::move(toc_c));
  LazyLayerFetched out;
  out.source = LazySource{client.host(), repo, insecure};
  out.map = std::move(*map);
  out.local = std::move(local);
  out.info.entries = std::move(idx->entries);
  out.info.tar_size = toc.tar_size;
  return out;
}

namespace {

// The chunks checked by inflating the committed blob again (eStargz, or a pass that did
// not see the tar), after the entry tables are compared.
Status CheckByInflating(Store& store, const LayerRecord& layer, const LazyDir& dir,
                        const std::string& lazy_entries, const std::string& tar_entries) {
  auto cm = ReadFileToString(dir.chunks(), 1ull << 30);
  auto map = cm.ok() ? DecodeChunkMap(*cm) : Result<ChunkMap>(cm.status());
  if (!map.ok()) return map.status();
  bool virtual_offsets =
      std::any_of(map->chunks.begin(), map->chunks.end(),
                  [](const LazyChunk& c) { return c.codec == ChunkCodec::kGzip; });
  if (virtual_offsets) {
    // eStargz: the lazy table has synthetic offsets (index/lazy_virtual.h); the tar's
    // must equal it but for them, and the chunks move to the tar's offsets.
    IMGFS_ASSIGN_OR_RETURN(auto lazy, DecodeEntries(lazy_entries));
    IMGFS_ASSIGN_OR_RETURN(auto tar, DecodeEntries(tar_entries));
    map = RelocateChunkMap(*map, lazy, tar, layer.size);
    if (!map.ok()) return map.status();
  } else if (tar_entries != lazy_entries) {
    return Status::Corruption("its entry table from the tar differs from the lazy pull's");
  }
  IMGFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(store.blobs().BlobPath(layer.blob), O_RDONLY));
  return VerifyChunksAgainstBlob(fd.get(), *map);
}

}  // namespace

Status CheckCompletedLayer(Store& store, const LayerRecord& layer, const Digest& lazy_blob,
                           const std::string& lazy_entries, const std::string& tar_entries,
                           const Status* checked) {
  LazyDir dir = LazyDir::For(store.root(), lazy_blob);
  Status st;
  if (!checked) {
    st = CheckByInflating(store, layer, dir, lazy_entries, tar_entries);
  } else if (tar_entries != lazy_entries) {
    st = Status::Corruption("its entry table from the tar differs from the lazy pull's");
  } else {
    st = *checked;  // zstd:chunked, its chunks checked in the pull's pass
  }
  if (!st.ok()) {
    std::string why = "completion found a mismatch: " + st.message();
    (void)dir.MarkBroken(why);
    return Status::Corruption("layer " + layer.diff_id.str() + ": " + why);
  }
  return dir.Remove();
}

}  // namespace imgfs
