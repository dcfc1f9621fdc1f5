// eStargz TOC reading (registry/estargz_toc.h) on blobs built here the way
// tests/estargz_writer.py builds them: a gzip member per file and per chunk, the TOC
// member, the 51-byte footer. Each hostile case is one mutation of a good TOC.
#include "registry/estargz_toc.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdio>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "index/gzip_chunk.h"
#include "tests/tar_builder.h"

namespace imgfs::estargz {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;  // key, raw JSON value

std::string Q(const std::string& s) {
  return "\"" + s + "\"";
}
std::string Sha(const std::string& d) {
  return Q("sha256:" + test::Sha256Hex(d));
}

std::string Header(const std::string& name, char type, uint64_t size) {
  test::RawTar::Header h;
  h.name = name;
  h.type = type;
  h.size = size;
  return test::RawTar().Entry(h).Finish().substr(0, 512);
}
std::string Pad(size_t n) {
  return std::string((512 - n % 512) % 512, '\0');
}

std::string Footer(uint64_t toc_offset) {
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(toc_offset));
  std::string f("\x1f\x8b\x08\x04\0\0\0\0\0\xff\x1a\0SG\x16\0", 16);
  f += std::string(hex) + "STARGZ";
  f += std::string("\x01\0\0\xff\xff", 5) + std::string(8, '\0');
  return f;
}

// A blob's payload (every member before the TOC) and its TOC entries.
struct Layer {
  std::string payload;
  std::vector<Fields> entries;
  std::string cur;  // the open member
  void Close() {
    if (!cur.empty()) payload += test::Gzip(cur);
    cur.clear();
  }
  void Add(Fields f, const std::string& name, char type, const std::string& data = "",
           size_t chunk = 1 << 20) {
    f.insert(f.begin(), {"name", Q(name)});
    cur += Header(name, type, data.size());
    if (type == '0') f.push_back({"size", std::to_string(data.size())});
    if (type != '0' || data.empty()) {
      entries.push_back(f);
      return;
    }
    f.push_back({"digest", Sha(data)});
    for (size_t at = 0; at < data.size(); at += chunk) {
      Fields c = at == 0 ? f : Fields{{"name", Q(name)}, {"type", Q("chunk")}};
      Close();
      c.push_back({"offset", std::to_string(payload.size())});
      if (at) c.push_back({"chunkOffset", std::to_string(at)});
      size_t n = std::min(chunk, data.size() - at);
      if (n == chunk) c.push_back({"chunkSize", std::to_string(n)});
      c.push_back({"chunkDigest", Sha(data.substr(at, n))});
      cur += data.substr(at, n);
      entries.push_back(c);
    }
    cur += Pad(data.size());
  }
};

std::string Json(const std::vector<Fields>& entries, int version = 1) {
  std::string j = "{\"version\":" + std::to_string(version) + ",\"entries\":[";
  for (size_t i = 0; i < entries.size(); i++) {
    j += i ? ",{" : "{";
    for (size_t k = 0; k < entries[i].size(); k++) {
      j += (k ? "," : "") + Q(entries[i][k].first) + ":" + entries[i][k].second;
    }
    j += "}";
  }
  return j + "]}";
}

std::string TocMember(const std::string& json) {
  return test::Gzip(Header(kTocName, '0', json.size()) + json + Pad(json.size()) +
                    std::string(1024, '\0'));
}

std::string Blob(const std::string& payload, const std::string& json) {
  return payload + TocMember(json) + Footer(payload.size());
}

std::string Big() {
  std::string s;
  std::mt19937 r(9);
  for (int i = 0; i < 300000; i++) s += static_cast<char>(r() % 251);
  return s;
}

Layer Good() {
  Layer l;
  l.Add({{"type", Q("reg")}, {"mode", "420"}}, ".no.prefetch.landmark", '0', "\x0f");
  l.Add({{"type", Q("dir")}, {"mode", "493"}}, "./", '5');
  l.Add({{"type", Q("dir")}, {"mode", "16877"}, {"modtime", Q("2023-11-14T22:13:20Z")}}, "./etc/",
        '5');
  l.Add({{"type", Q("reg")}, {"mode", "420"}, {"uid", "1000"}, {"gid", "7"}}, "./etc/passwd", '0',
        "root:x:0:0\n");
  l.Add({{"type", Q("reg")}, {"mode", "420"}}, "./empty", '0', "");
  l.Add({{"type", Q("reg")}, {"mode", "493"}, {"xattrs", "{\"user.a\":\"aGk=\"}"}}, "./big", '0',
        Big(), 100000);
  l.Add({{"type", Q("symlink")}, {"linkName", Q("../etc/passwd")}}, "./ln", '2');
  l.Add({{"type", Q("hardlink")}, {"linkName", Q("./etc/passwd")}}, "./hl", '1');
  l.Add({{"type", Q("char")}, {"devMajor", "1"}, {"devMinor", "3"}}, "./null", '3');
  l.Close();
  return l;
}

Result<LayerToc> Read(const std::string& blob, const Digest& want) {
  return ReadEstargzToc(
      Sha256Of(blob), blob.size(),
      [&](uint64_t off, uint64_t len) -> Result<std::string> {
        if (off > blob.size() || len > blob.size() - off) return Status::InvalidArgument("oob");
        return blob.substr(off, len);
      },
      want);
}
Result<LayerToc> ReadJson(const Layer& l, const std::string& json) {
  return Read(Blob(l.payload, json), Sha256Of(json));
}

std::string Inflate(std::string_view in, size_t skip, size_t n) {
  z_stream z{};
  inflateInit2(&z, 16 + MAX_WBITS);
  std::string out(skip + n, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  inflate(&z, Z_SYNC_FLUSH);
  out.resize(out.size() - z.avail_out);
  inflateEnd(&z);
  return out.substr(std::min(skip, out.size()));
}

TEST(EstargzToc, ReadsWhatTheWriterWrites) {
  Layer l = Good();
  std::string json = Json(l.entries);
  std::string blob = Blob(l.payload, json);
  auto toc = Read(blob, Sha256Of(json));
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  const uint64_t toc_offset = l.payload.size();
  EXPECT_EQ(toc->format, TocFormat::kEstargz);
  EXPECT_EQ(toc->blob, Sha256Of(blob));
  EXPECT_EQ(toc->blob_size, blob.size());
  EXPECT_EQ(toc->toc_digest, Sha256Of(json));
  ASSERT_EQ(toc->entries.size(), 10u);  // the 9 listed, then stargz.index.json
  const auto& e = toc->entries;
  EXPECT_EQ(e[0].path, ".no.prefetch.landmark");
  EXPECT_EQ(e[1].path, "");  // the root
  EXPECT_EQ(e[2].path, "etc");
  EXPECT_EQ(e[2].type, EntryType::kDir);
  EXPECT_EQ(e[2].mode, 0755u);  // type bits dropped
  EXPECT_EQ(e[2].mtime_sec, 1700000000);
  EXPECT_EQ(e[3].uid, 1000u);
  EXPECT_EQ(e[3].gid, 7u);
  EXPECT_EQ(e[4].size, 0u);
  EXPECT_TRUE(e[4].chunks.empty());
  const TocEntry& big = e[5];
  EXPECT_EQ(big.path, "big");
  EXPECT_EQ(big.size, 300000u);
  ASSERT_TRUE(big.digest.has_value());
  EXPECT_EQ(*big.digest, Sha256Of(Big()));
  ASSERT_EQ(big.xattrs.size(), 1u);
  EXPECT_EQ(big.xattrs[0].name, "user.a");
  EXPECT_EQ(big.xattrs[0].value, "hi");
  ASSERT_EQ(big.chunks.size(), 3u);
  for (size_t i = 0; i < 3; i++) {
    const TocChunk& c = big.chunks[i];
    EXPECT_EQ(c.file_offset, i * 100000);
    EXPECT_EQ(c.size, 100000u);
    EXPECT_EQ(c.codec, ChunkCodec::kGzip);
    EXPECT_GT(c.blob_length, 0u);
    EXPECT_EQ(c.blob_offset + c.blob_length, i < 2 ? big.chunks[i + 1].blob_offset : toc_offset);
    // The offsets mean what they say: the member there inflates to the chunk.
    std::string got =
        Inflate(std::string_view(blob).substr(c.blob_offset, c.blob_length), c.skip, c.size);
    EXPECT_EQ(Sha256Of(got), c.digest) << "chunk " << i;
    EXPECT_EQ(got, Big().substr(c.file_offset, c.size));
  }
  EXPECT_EQ(e[3].chunks.at(0).blob_offset + e[3].chunks[0].blob_length, big.chunks[0].blob_offset);
  EXPECT_FALSE(e[4].digest.has_value());  // an empty file without one
  EXPECT_EQ(e[6].link, "../etc/passwd");  // symlink: verbatim
  EXPECT_EQ(e[7].link, "etc/passwd");     // hard link: normalised
  EXPECT_EQ(e[8].dev_major, 1u);
  EXPECT_EQ(e[8].dev_minor, 3u);
  // The TOC file itself, as the tar has it: one chunk, the TOC member after its header.
  const TocEntry& tf = e[9];
  EXPECT_EQ(tf.path, "stargz.index.json");
  EXPECT_EQ(tf.type, EntryType::kFile);
  EXPECT_EQ(tf.mode, 0644u);
  EXPECT_EQ(tf.size, json.size());
  ASSERT_EQ(tf.chunks.size(), 1u);
  EXPECT_EQ(tf.chunks[0].blob_offset, toc_offset);
  EXPECT_EQ(tf.chunks[0].blob_offset + tf.chunks[0].blob_length, blob.size() - kFooterSize);
  EXPECT_EQ(Inflate(std::string_view(blob).substr(toc_offset, tf.chunks[0].blob_length),
                    tf.chunks[0].skip, tf.chunks[0].size),
            json);
  EXPECT_EQ(tf.chunks[0].digest, Sha256Of(json));
}

// Interop: a blob made by tests/estargz_writer.py (the writer the e2e suites push),
// read back here; every chunk inflated from its offset equals the file's bytes.
TEST(EstargzToc, ReadsTheTestWritersBlob) {
  std::string tests = __FILE__;
  tests = tests.substr(0, tests.rfind('/'));
  std::string dir = test::MakeTempDir();
  std::string big = Big();
  test::WriteFile(dir + "/in.tar", test::TarBuilder()
                                       .Dir("etc")
                                       .File("etc/passwd", "root:x:0:0\n")
                                       .File("big", big)
                                       .Symlink("l", "big")
                                       .Hardlink("h", "big")
                                       .Build());
  std::string cmd = "/usr/bin/python3 " + tests + "/estargz_writer.py blob " + dir + "/in.tar " +
                    dir + "/out --chunk-size 65536";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  ASSERT_EQ(pclose(p), 0) << cmd;
  size_t at = out.find("\"toc_digest\": \"");
  ASSERT_NE(at, std::string::npos) << out;
  auto want = Digest::Parse(out.substr(at + 15, 71));
  ASSERT_TRUE(want.ok()) << out;
  std::string blob;
  {
    FILE* f = fopen((dir + "/out").c_str(), "rb");
    ASSERT_NE(f, nullptr);
    for (size_t n; (n = fread(buf, 1, sizeof buf, f)) > 0;) blob.append(buf, n);
    fclose(f);
  }
  test::RemoveTree(dir);
  auto toc = Read(blob, *want);
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  std::map<std::string, const TocEntry*> by;
  for (const auto& e : toc->entries) by[e.path] = &e;
  ASSERT_TRUE(by.count(".no.prefetch.landmark") && by.count("etc/passwd") && by.count("big") &&
              by.count("l") && by.count("h"));
  EXPECT_EQ(by["h"]->type, EntryType::kHardlink);
  EXPECT_EQ(by["h"]->link, "big");
  EXPECT_EQ(by["l"]->link, "big");
  const TocEntry& b = *by["big"];
  EXPECT_EQ(*b.digest, Sha256Of(big));
  ASSERT_EQ(b.chunks.size(), 5u);  // 300000 bytes in 64 KiB chunks
  for (const TocChunk& c : b.chunks) {
    std::string got =
        Inflate(std::string_view(blob).substr(c.blob_offset, c.blob_length), c.skip, c.size);
    EXPECT_EQ(got, big.substr(c.file_offset, c.size)) << "chunk at " << c.file_offset;
    EXPECT_EQ(Sha256Of(got), c.digest);
  }
  EXPECT_EQ(toc->entries.back().path, "stargz.index.json");
  EXPECT_EQ(toc->entries.back().chunks.at(0).digest, *want);
  // And a flipped byte of the TOC JSON's digest: refused.
  std::string other = want->str();
  other[10] = other[10] == '0' ? '1' : '0';
  EXPECT_FALSE(Read(blob, *Digest::Parse(other)).ok());
}

// index/gzip_chunk.h: what a lazy read does with a kGzip chunk of this TOC.
TEST(EstargzToc, GzipChunksDecodeOnlyWhenTheirDigestMatches) {
  Layer l = Good();
  std::string json = Json(l.entries);
  std::string blob = Blob(l.payload, json);
  auto toc = Read(blob, Sha256Of(json));
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  size_t n = 0;
  for (const TocEntry& e : toc->entries) {
    for (const TocChunk& c : e.chunks) {
      std::string_view comp = std::string_view(blob).substr(c.blob_offset, c.blob_length);
      auto got = DecodeGzipChunk(comp, c.skip, c.size, c.digest);
      ASSERT_TRUE(got.ok()) << e.path << ": " << got.status().ToString();
      EXPECT_EQ(got->size(), c.size);
      EXPECT_EQ(Sha256Of(*got), c.digest);
      n++;
      // (Stopping inside a member is fine: the digest vouches for the bytes.)
      EXPECT_FALSE(DecodeGzipChunk(comp, c.skip, c.size, Sha256Of("other")).ok()) << e.path;
      EXPECT_FALSE(DecodeGzipChunk(comp.substr(0, 10), c.skip, c.size, c.digest).ok()) << e.path;
      EXPECT_FALSE(DecodeGzipChunk(comp, c.skip + 1, c.size, c.digest).ok()) << e.path;
    }
  }
  EXPECT_EQ(n, 6u);  // landmark, passwd, big x3, stargz.index.json
  // Content that spans two members; garbage that is not gzip.
  std::string two = test::Gzip("hdr-abc") + test::Gzip("def-tail");
  auto both = DecodeGzipChunk(two, 4, 6, Sha256Of("abcdef"));
  ASSERT_TRUE(both.ok()) << both.status().ToString();
  EXPECT_EQ(*both, "abcdef");
  EXPECT_FALSE(DecodeGzipChunk("not gzip at all", 0, 3, Sha256Of("not")).ok());
  EXPECT_FALSE(DecodeGzipChunk(two, kMaxGzipChunk, 1, Sha256Of("")).ok());
}

TEST(EstargzToc, TocDigestMustMatchTheAnnotation) {
  Layer l = Good();
  std::string json = Json(l.entries);
  auto toc = Read(Blob(l.payload, json), Sha256Of(json + " "));
  ASSERT_FALSE(toc.ok());
  EXPECT_NE(toc.status().message().find("is not the annotated"), std::string::npos)
      << toc.status().ToString();
  auto none = Read(Blob(l.payload, json), Digest());
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("toc.digest"), std::string::npos);
}

TEST(EstargzToc, FooterIsChecked) {
  Layer l = Good();
  std::string json = Json(l.entries);
  std::string blob = Blob(l.payload, json);
  ASSERT_TRUE(ParseFooter(blob.substr(blob.size() - 51), blob.size()).ok());
  // Every byte of the footer matters except gzip's MTIME, XFL and OS (bytes 4..9).
  for (size_t i = 0; i < 51; i++) {
    if (i >= 4 && i <= 9) continue;
    std::string b = blob;
    b[b.size() - 51 + i] ^= (i >= 16 && i < 32) ? 0x40 : 0x01;  // hex digit -> not hex
    EXPECT_FALSE(Read(b, Sha256Of(json)).ok()) << "footer byte " << i;
  }
  // The TOC offset must point before the footer; a legacy (47-byte) stargz footer is not read.
  std::string past = l.payload + TocMember(json) + Footer(blob.size());
  EXPECT_FALSE(Read(past, Sha256Of(json)).ok());
  std::string wrong = l.payload + TocMember(json) + Footer(1);  // not where the TOC is
  EXPECT_FALSE(Read(wrong, Sha256Of(json)).ok());
  EXPECT_FALSE(Read(blob.substr(0, 50), Sha256Of(json)).ok());
}

TEST(EstargzToc, TocMemberIsChecked) {
  Layer l = Good();
  std::string json = Json(l.entries);
  auto with_member = [&](const std::string& m) {
    return Read(l.payload + m + Footer(l.payload.size()), Sha256Of(json));
  };
  ASSERT_TRUE(with_member(TocMember(json)).ok());
  std::string m = TocMember(json);
  EXPECT_FALSE(with_member(m + "x").ok());                    // trailing bytes
  EXPECT_FALSE(with_member(m.substr(0, m.size() - 9)).ok());  // truncated
  EXPECT_FALSE(with_member(m + TocMember(json)).ok());        // two members
  EXPECT_FALSE(with_member(test::Gzip(Header("other.json", '0', json.size()) + json)).ok());
  std::string h = Header(kTocName, '0', json.size());
  h[153] = h[153] == '0' ? '1' : '0';  // the checksum field no longer matches
  EXPECT_FALSE(with_member(test::Gzip(h + json)).ok());
  // A size past the member's end.
  EXPECT_FALSE(with_member(test::Gzip(Header(kTocName, '0', json.size() + 4096) + json)).ok());
  // Bounded: a small TOC limit, and a TOC that inflates past the JSON limit.
  TocLimits tight;
  const size_t tar_size = 512 + json.size() + Pad(json.size()).size() + 1024;
  tight.max_toc_json = tar_size - 1;
  EXPECT_FALSE(ExtractTocJson(m, tight).ok());
  tight.max_toc_json = tar_size;
  EXPECT_TRUE(ExtractTocJson(m, tight).ok());
  tight = TocLimits();
  tight.max_toc_member = m.size() - 1;
  EXPECT_FALSE(ExtractTocJson(m, tight).ok());
}

// A mutation of the good TOC, and a word its error must contain.
struct Hostile {
  const char* what;
  std::function<void(std::vector<Fields>&)> mutate;
  const char* expect;
};

void Set(Fields& f, const std::string& k, const std::string& v) {
  for (auto& [key, val] : f) {
    if (key == k) {
      val = v;
      return;
    }
  }
  f.push_back({k, v});
}
void Drop(Fields& f, const std::string& k) {
  std::erase_if(f, [&](const auto& kv) { return kv.first == k; });
}
// Entry indexes in Good(): 0 landmark, 1 root, 2 etc, 3 passwd, 4 empty, 5 big,
// 6 and 7 big's chunks, 8 ln, 9 hl, 10 null.
TEST(EstargzToc, HostileTocsAreRefused) {
  const std::vector<Hostile> cases = {
      {"a name that leaves the root", [](auto& e) { Set(e[3], "name", Q("../../etc/shadow")); },
       "entry 3"},
      {"a NUL in a name", [](auto& e) { Set(e[3], "name", Q("a\\u0000b")); }, "entry 3"},
      {"a hard link out of the root", [](auto& e) { Set(e[9], "linkName", Q("/../x")); },
       "link target"},
      {"an empty file name", [](auto& e) { Set(e[4], "name", Q("./")); }, "entry 4"},
      {"unknown type", [](auto& e) { Set(e[1], "type", Q("socket")); }, "unknown type"},
      {"version 2", [](auto& e) { (void)e; }, "version"},
      {"a data offset at the TOC", [](auto& e) { Set(e[7], "offset", "999999999"); }, "offset"},
      {"data offsets going back", [](auto& e) { std::swap(e[6][2], e[7][2]); }, "does not follow"},
      {"two pieces at one place", [](auto& e) { Set(e[7], "offset", e[6][2].second); },
       "does not follow"},
      {"a chunk missing", [](auto& e) { e.erase(e.begin() + 7); }, "cover"},
      {"a gap between chunks", [](auto& e) { Set(e[7], "chunkOffset", "200001"); }, "chunkOffset"},
      {"a chunk past the end", [](auto& e) { Set(e[7], "chunkSize", "100001"); }, "past"},
      {"a chunk of no file",
       [](auto& e) {
         Fields c = e[6];
         e.erase(e.begin() + 6);
         e.insert(e.begin() + 2, c);
       },
       "follows no regular file"},
      {"a chunk of another file", [](auto& e) { Set(e[6], "name", Q("./other")); }, "another file"},
      {"an extra chunk",
       [](auto& e) {
         Fields c = e[7];
         Set(c, "offset", "0");
         e.insert(e.begin() + 8, c);
       },
       "past the end"},
      {"no chunkDigest", [](auto& e) { Drop(e[6], "chunkDigest"); }, "chunkDigest"},
      {"no file digest", [](auto& e) { Drop(e[5], "digest"); }, "digest"},
      {"a bad chunkDigest", [](auto& e) { Set(e[7], "chunkDigest", Q("sha256:abc")); },
       "chunkDigest"},
      {"a negative size", [](auto& e) { Set(e[3], "size", "-1"); }, "size"},
      {"a huge size", [](auto& e) { Set(e[3], "size", "18446744073709551615"); }, "size"},
      {"a string size", [](auto& e) { Set(e[3], "size", Q("11")); }, "size"},
      {"a negative uid", [](auto& e) { Set(e[3], "uid", "-5"); }, "uid"},
      {"a bad modtime", [](auto& e) { Set(e[2], "modtime", Q("yesterday")); }, "modtime"},
      {"a bad xattr", [](auto& e) { Set(e[5], "xattrs", "{\"user.a\":\"!!\"}"); }, "xattr"},
      {"a long symlink", [](auto& e) { Set(e[8], "linkName", Q(std::string(5000, 'a'))); },
       "symlink"},
      {"an entry that is not an object", [](auto& e) { e[2] = {}; }, "entry 2"},
  };
  Layer l = Good();
  ASSERT_TRUE(ReadJson(l, Json(l.entries)).ok());
  for (const Hostile& h : cases) {
    std::vector<Fields> e = l.entries;
    h.mutate(e);
    std::string json = Json(e, std::string(h.what) == "version 2" ? 2 : 1);
    if (std::string(h.what) == "an entry that is not an object") {
      json = Json(l.entries);
      json.replace(json.find("{\"name\":\"./etc/\""), 0, "7,");
    }
    auto toc = ReadJson(l, json);
    ASSERT_FALSE(toc.ok()) << h.what;
    EXPECT_NE(toc.status().message().find(h.expect), std::string::npos)
        << h.what << ": " << toc.status().ToString();
  }
}

// A hard link to a name the TOC has not had yet is a lower layer's file, as in a tar
// (docs/layer-rules.md, rule 2): kept for the merge. Refused before, which failed
// `pull --lazy` of images docker pulls (found by tests/differential/lazydiff.py).
TEST(EstargzToc, AHardLinkMayNameALowerLayersFile) {
  Layer l = Good();
  std::vector<Fields> e = l.entries;
  Set(e[9], "linkName", Q("./null"));  // "null" comes later in this TOC
  auto toc = ReadJson(l, Json(e));
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  Set(e[9], "linkName", Q("./usr/lib/lower"));  // nowhere in this TOC
  toc = ReadJson(l, Json(e));
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  bool found = false;
  for (const TocEntry& t : toc->entries) {
    if (t.type == EntryType::kHardlink) found = found || t.link == "usr/lib/lower";
  }
  EXPECT_TRUE(found);
}

// A name component of more than 85 bytes that are not UTF-8 is more than 255 bytes as
// the TOC spells it (U+FFFD, 3 bytes, for each): not a bad layer, one to pull in full.
// A name too long in any spelling is still refused.
TEST(EstargzToc, ANameTooLongOnlyInTheTocsSpellingIsUnsupported) {
  std::string bad;
  for (int i = 0; i < 100; i++) bad += "\xEF\xBF\xBD";
  Layer l = Good();
  std::vector<Fields> e = l.entries;
  Set(e[3], "name", Q(bad));
  EXPECT_EQ(ReadJson(l, Json(e)).status().code(), Status::Code::kUnsupported);
  e = l.entries;
  Set(e[9], "linkName", Q(bad));
  EXPECT_EQ(ReadJson(l, Json(e)).status().code(), Status::Code::kUnsupported);
  e = l.entries;
  std::string target;
  for (int i = 0; i < 1400; i++) target += "\xEF\xBF\xBD";
  Fields link = {{"name", Q("./s")}, {"type", Q("symlink")}, {"linkName", Q(target)}};
  e.push_back(link);
  EXPECT_EQ(ReadJson(l, Json(e)).status().code(), Status::Code::kUnsupported);
  e.back() = {{"name", Q("./s")}, {"type", Q("symlink")}, {"linkName", Q(std::string(4096, 'a'))}};
  auto refused = ReadJson(l, Json(e));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().code(), Status::Code::kUnsupported);
  e = l.entries;
  Set(e[3], "name", Q(std::string(256, 'a')));
  auto toc = ReadJson(l, Json(e));
  ASSERT_FALSE(toc.ok());
  EXPECT_NE(toc.status().code(), Status::Code::kUnsupported);
  e = l.entries;
  Set(e[3], "name", Q(bad + std::string(160, 'a')));  // > 255 even at a byte per U+FFFD
  toc = ReadJson(l, Json(e));
  ASSERT_FALSE(toc.ok());
  EXPECT_NE(toc.status().code(), Status::Code::kUnsupported);
}

TEST(EstargzToc, EntryCountIsBounded) {
  Layer l = Good();
  std::string json = Json(l.entries);
  TocLimits lim;
  lim.max_entries = l.entries.size() - 1;
  EXPECT_FALSE(ParseTocJson(json, l.payload.size(), lim).ok());
  lim.max_entries = l.entries.size();
  EXPECT_TRUE(ParseTocJson(json, l.payload.size(), lim).ok());
  EXPECT_FALSE(ParseTocJson("[1,2]", 100).ok());
  EXPECT_FALSE(ParseTocJson("{\"version\":1}", 100).ok());
  EXPECT_FALSE(ParseTocJson("{\"version\":1,\"entries\":[", 100).ok());
}

// Random damage anywhere in the TOC member or footer: an answer, never a crash (the
// fuzz target tests/fuzz/estargz_toc_fuzz.cc goes further under the sanitizers).
TEST(EstargzToc, RandomDamageNeverCrashes) {
  Layer l = Good();
  std::string json = Json(l.entries);
  std::string blob = Blob(l.payload, json);
  std::mt19937 r(42);
  size_t ok = 0;
  for (int i = 0; i < 3000; i++) {
    std::string b = blob;
    size_t tail = b.size() - l.payload.size();
    for (int k = 0; k < 1 + static_cast<int>(r() % 3); k++) {
      b[l.payload.size() + r() % tail] ^= static_cast<char>(1 + r() % 255);
    }
    ok += Read(b, Sha256Of(json)).ok();
  }
  // Damage to gzip's MTIME/XFL/OS header bytes is harmless; anything else is caught.
  EXPECT_LT(ok, 300u);
}

}  // namespace
}  // namespace imgfs::estargz
