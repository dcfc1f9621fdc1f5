// `imgfs pull --lazy` (issue 9): a zstd:chunked layer is recorded from its table of
// contents and tar-split alone (registry/zstd_chunked.h): both fetched with Range
// requests and checked against the digests in the manifest's annotations; the entry
// table is what the ordinary tar indexer makes of the tar-split's headers (so it is
// byte for byte the one a full pull records), cross-checked against the TOC; the
// chunk map, the source and the TOC/tar-split bytes (already local) go to
// lazy/<blob hex>/ (index/lazy_layer.h). Reads fetch the rest (fs/lazy_blob.h).
//
// A plain pull of the image completes it: the blob (what lazy/ holds, plus the gaps
// fetched: OpenLazyCompletion) is verified as any layer (digest, size, diff_id), then
// CheckCompletedLayer compares: the entry table
// the tar gives must equal the lazy one, and every TOC chunk must hash to its digest at
// its tar offset. A mismatch marks the layer broken (lazy/<hex>/broken: its reads fail,
// `imgfs images` and `verify` say why); else lazy/<hex>/ is removed.
#ifndef IMGFS_REGISTRY_LAZY_PULL_H_
#define IMGFS_REGISTRY_LAZY_PULL_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "index/layer_entry.h"
#include "index/lazy_layer.h"
#include "index/store.h"
#include "index/stream.h"
#include "registry/json.h"
#include "registry/registry_client.h"

namespace imgfs {

struct LazyLayerInfo {
  std::vector<LayerEntry> entries;
  uint64_t tar_size = 0;
};

// eStargz layers (toc.digest annotation): the footer and TOC, checked against the
// annotation; the entry table at synthetic offsets (index/lazy_virtual.h), replaced by
// the tar's at completion (compared modulo offsets).
// Unsupported: the layer cannot be pulled lazily (neither zstd:chunked nor eStargz, or
// its tar-split has no digest to check it against): the caller pulls it in full.
Result<LazyLayerInfo> PrepareLazyLayer(Store& store, RegistryClient& client,
                                       const std::string& repo, bool insecure,
                                       const Descriptor& desc);

// PrepareLazyLayer in two steps, so a pull can fetch layers' TOCs and tar headers while
// its config is on its way and store nothing until that is verified (puller.cc):
// FetchLazyLayer fetches and checks everything (TOC against the manifest's digest,
// headers against the TOC) and writes nothing; StoreLazyLayer then creates
// lazy/<blob hex>/. `cancelled` (optional) is polled between and during requests
// (about once a second): true stops the fetch (Unavailable).
struct LazyLayerFetched {
  LazyLayerInfo info;
  LazySource source;
  ChunkMap map;
  std::vector<std::pair<uint64_t, std::string>> local;  // blob bytes fetched, kept
};
Result<LazyLayerFetched> FetchLazyLayer(RegistryClient& client, const std::string& repo,
                                        bool insecure, const Descriptor& desc,
                                        const std::function<bool()>& cancelled = {});
Result<LazyLayerInfo> StoreLazyLayer(Store& store, const Descriptor& desc,
                                     LazyLayerFetched fetched);

// After a plain pull stored the blob of a layer that was lazy (see above).
// `lazy_entries`: the entry table recorded by the lazy pull; `tar_entries`: the one the
// full pull indexed from the tar (both encoded, layer_entry.h).
// `lazy_blob`: the blob lazy/ holds (the layer's record may name another blob of the
// same tar now, one the pull took instead). `checked`: the verdict of a ChunkVerifier
// that saw the whole tar in the pull's pass, given only for zstd:chunked (null: the
// chunk map is read and the blob inflated again to check it; always so for eStargz,
// whose offsets move).
Status CheckCompletedLayer(Store& store, const LayerRecord& layer, const Digest& lazy_blob,
                           const std::string& lazy_entries, const std::string& tar_entries,
                           const Status* checked = nullptr);

// The whole blob of a lazily pulled layer, for its completion by a plain pull: the
// ranges lazy/<blob hex>/ holds are read from its data file, the gaps fetched by
// `fetcher` in blob order: gaps of 1 MiB and more with bounded Range requests, smaller
// ones in multi-range requests (RangeFetcher::FetchRanges). Local ranges shorter than
// `min_reused` are fetched again with the gaps around them (unless they are all that
// is left); a registry that ignores Range (200) has its answer used for the rest of the
// blob, or cut at the end of a batch. Nothing local is trusted: the caller verifies the
// blob's digest as for any download, and fetches it whole when that fails. NotFound
// when there is nothing worth reusing (no lazy/ directory, a broken one, no range of
// `min_reused`, more than `max_gaps` gaps). `local` (optional) gets the bytes read from
// disk. `from`: the blob from that offset on (after a partial file holding [0, from)).
struct LazyCompletionOptions {
  uint64_t min_reused = 256 << 10;  // the smallest range a lazy read fetches
  size_t max_gaps = 4096;
};
Result<std::unique_ptr<ByteSource>> OpenLazyCompletion(const Store& store, const Descriptor& desc,
                                                       std::shared_ptr<RangeFetcher> fetcher,
                                                       std::shared_ptr<uint64_t> local = nullptr,
                                                       uint64_t from = 0,
                                                       const LazyCompletionOptions& opt = {});

// True when the layer's blob is not stored but lazy/ has it (partially).
bool IsLazyLayer(const Store& store, const LayerRecord& layer);

}  // namespace imgfs

#endif  // IMGFS_REGISTRY_LAZY_PULL_H_
