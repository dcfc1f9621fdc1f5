#include "registry/pusher.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstdint>
#include <map>

#include "index/file_util.h"
#include "registry/image_export.h"
#include "registry/printable.h"

namespace imgfs {
namespace {

// An unexpected answer: 5xx and 429 are worth another attempt (Unavailable); 401 and
// 403 are a refusal; anything else is the registry saying no.
Status HttpError(const std::string& what, const HttpResponse& r) {
  // The registry's words, but not its control bytes (terminal escapes).
  std::string body = r.body.substr(0, 300);
  for (char& c : body)
    if (c == '\n' || c == '\r') c = ' ';
  body = Printable(body, 300);
  std::string msg = what + ": HTTP " + std::to_string(r.status) + (body.empty() ? "" : ": " + body);
  if (r.status == 401 || r.status == 403)
    return Status::InvalidArgument(msg +
                                   " (denied: run imgfs login, or check the repository name)");
  if (r.status >= 500 || r.status == 429) return Status::Unavailable(msg);
  return Status::InvalidArgument(msg);
}

// For each blob, another repository of `domain` that holds it (known from the names
// the store's images were pulled or tagged as).
Result<std::map<std::string, std::string>> MountSources(const Store& store, const Reference& dest) {
  std::map<std::string, std::string> out;
  IMGFS_ASSIGN_OR_RETURN(auto refs, store.ListRefs());
  for (auto& [name, rec] : refs) {
    auto r = ParseReference(name);
    if (!r.ok() || r->domain != dest.domain || r->path == dest.path) continue;
    auto id = Digest::FromHex(rec.image_id);
    if (!id.ok()) continue;
    auto img = store.GetImage(*id);
    if (!img.ok() || !*img) continue;
    for (const Digest& d : (*img)->diff_ids) {
      auto l = store.GetLayer(d);
      if (l.ok() && *l) out.emplace((*l)->blob.hex(), r->path);
    }
    out.emplace(id->hex(), r->path);
  }
  return out;
}

// A registry's header value as an error shows it: quoted, control bytes as '?', at most
// 100 bytes.
std::string Shown(std::string_view v) {
  return "\"" + Printable(v, 100) + "\"";
}

class Pusher {
 public:
  Pusher(RegistryClient& c, const Reference& dest, const PushOptions& o)
      : client_(c), dest_(dest), opt_(o), scope_("repository:" + dest.path + ":pull,push") {}

  // An upload Location as Do() takes it (ResolveUploadLocation).
  Result<std::string> Resolve(const std::string& loc) {
    IMGFS_ASSIGN_OR_RETURN(std::string base, client_.Base());
    return ResolveUploadLocation(base, loc);
  }

  static std::string WithDigest(const std::string& loc, const Digest& d) {
    return loc + (loc.find('?') == std::string::npos ? "?" : "&") + "digest=" + d.str();
  }

  Result<HttpResponse> Send(const std::string& method, const std::string& path,
                            RegistryClient::Request r = {}) {
    r.method = method;
    r.path_or_url = path;
    r.scope = scope_;
    // A HEAD answer's Content-Length is the blob's size, with no body to bound.
    r.max_body = method == "HEAD" ? SIZE_MAX : 64 << 10;
    // A POST opens a session and a PATCH moves its offset: not repeatable. PushBlob
    // starts a failed blob over instead.
    r.retry_transient = method == "HEAD" || method == "GET";
    return client_.Do(r);
  }

  // One attempt at one blob. `status` is what progress shows.
  Status PushBlobOnce(const Digest& d, int fd, uint64_t size, const std::string& from,
                      std::string* status) {
    std::string blobs = "/v2/" + dest_.path + "/blobs/";
    IMGFS_ASSIGN_OR_RETURN(HttpResponse head, Send("HEAD", blobs + d.str()));
    if (head.status == 200) {
      *status = "Layer already exists";
      return Status::Ok();
    }
    if (head.status != 404) return HttpError("HEAD blob " + d.str(), head);
    std::string post = blobs + "uploads/";
    if (!from.empty()) post += "?mount=" + d.str() + "&from=" + from;
    IMGFS_ASSIGN_OR_RETURN(HttpResponse start, Send("POST", post));
    if (start.status == 201 && !from.empty()) {
      *status = "Mounted from " + from;
      return Status::Ok();
    }
    if ((start.status == 401 || start.status == 403) && !from.empty()) {
      // A token service may refuse the source repository's pull scope that a mount
      // needs (distribution asks for it): upload instead.
      post = blobs + "uploads/";
      IMGFS_ASSIGN_OR_RETURN(start, Send("POST", post));
    }
    if (start.status != 202) return HttpError("POST " + post, start);
    IMGFS_ASSIGN_OR_RETURN(std::string loc, Resolve(start.Header("location")));
    if (opt_.chunk_size > 0) {
      uint64_t off = 0;
      while (off < size) {
        uint64_t n = std::min(opt_.chunk_size, size - off);
        RegistryClient::Request r;
        r.body_fd = fd;
        r.body_offset = off;
        r.body_size = n;
        r.headers = {"Content-Type: application/octet-stream",
                     "Content-Range: " + std::to_string(off) + "-" + std::to_string(off + n - 1)};
        IMGFS_ASSIGN_OR_RETURN(HttpResponse p, Send("PATCH", loc, r));
        if (p.status != 202)
          return HttpError("PATCH upload of " + d.str() + " at byte " + std::to_string(off), p);
        // The registry says how much it holds; anything but what was sent (an offset
        // that went backwards, a lost chunk) would store a blob with a hole.
        std::string range = p.Header("range");
        if (!range.empty()) {
          auto held = ParseUploadRange(range);
          if (!held)
            return Status::InvalidArgument("PATCH upload of " + d.str() + ": unreadable Range " +
                                           Shown(range));
          if (*held != off + n)
            return Status::InvalidArgument("PATCH upload of " + d.str() + ": the registry holds " +
                                           std::to_string(*held) + " bytes after " +
                                           std::to_string(off + n) + " were sent (Range " +
                                           Shown(range) + ")");
        }
        IMGFS_ASSIGN_OR_RETURN(loc, Resolve(p.Header("location")));
        off += n;
      }
      RegistryClient::Request r;
      r.headers = {"Content-Type: application/octet-stream"};
      IMGFS_ASSIGN_OR_RETURN(HttpResponse put, Send("PUT", WithDigest(loc, d), r));
      if (put.status != 201) return HttpError("PUT blob " + d.str(), put);
    } else {
      RegistryClient::Request r;
      r.body_fd = fd;
      r.body_size = size;
      r.headers = {"Content-Type: application/octet-stream"};
      IMGFS_ASSIGN_OR_RETURN(HttpResponse put, Send("PUT", WithDigest(loc, d), r));
      if (put.status != 201) return HttpError("PUT blob " + d.str(), put);
    }
    *status = "Pushed";
    return Status::Ok();
  }

  Status PushBlob(const Store& store, const Digest& d, uint64_t size, const std::string& from) {
    IMGFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(store.blobs().BlobPath(d), O_RDONLY | O_CLOEXEC));
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("stat blob " + d.str());
    if (static_cast<uint64_t>(st.st_size) != size)
      return Status::Corruption("blob " + d.str() + " is " + std::to_string(st.st_size) +
                                " bytes, its descriptor says " + std::to_string(size));
    if (opt_.progress) opt_.progress(d.Short(), "Preparing");
    Status st2;
    for (int attempt = 1; attempt <= 3; attempt++) {
      std::string status;
      st2 = PushBlobOnce(d, fd.get(), size, attempt == 1 ? from : "", &status);
      if (st2.ok()) {
        if (opt_.progress) opt_.progress(d.Short(), status);
        return st2;
      }
      if (st2.code() != Status::Code::kUnavailable || attempt == 3) break;
      if (opt_.progress) opt_.progress(d.Short(), "Retrying (" + st2.message() + ")");
    }
    return st2.WithContext("blob " + d.str());
  }

  Result<PushResult> PushManifest(const ExportManifest& m) {
    RegistryClient::Request r;
    r.body = m.bytes;
    r.headers = {"Content-Type: " + m.media_type};
    std::string tag = dest_.tag.empty() ? "latest" : dest_.tag;
    IMGFS_ASSIGN_OR_RETURN(HttpResponse put,
                           Send("PUT", "/v2/" + dest_.path + "/manifests/" + tag, r));
    if (put.status != 201 && put.status != 200)
      return HttpError("PUT /v2/" + dest_.path + "/manifests/" + tag, put);
    IMGFS_RETURN_IF_ERROR(CheckManifestDigest(put.Header("docker-content-digest"), m.digest));
    PushResult out;
    out.manifest_digest = m.digest;
    out.manifest_size = m.bytes.size();
    out.media_type = m.media_type;
    return out;
  }

 private:
  RegistryClient& client_;
  Reference dest_;
  PushOptions opt_;
  std::string scope_;
};

}  // namespace

Result<std::string> ResolveUploadLocation(const std::string& base, std::string_view loc) {
  if (loc.empty()) return Status::Unavailable("registry sent no upload Location");
  if (loc.size() > kMaxUploadLocation)
    return Status::InvalidArgument("registry sent an upload Location of " +
                                   std::to_string(loc.size()) + " bytes (more than " +
                                   std::to_string(kMaxUploadLocation) + ")");
  std::string l(loc);
  if (l[0] == '/') {
    // A path on the registry: checked as the URL it becomes (no control characters).
    IMGFS_RETURN_IF_ERROR(CheckFetchUrl(base + l, "upload Location"));
    return l;
  }
  // Checked before anything else: a URL under the registry's base becomes a path, and
  // that path must not carry what the URL check refuses (control characters).
  IMGFS_RETURN_IF_ERROR(CheckFetchUrl(l, "upload Location"));
  if (l.rfind(base + "/", 0) == 0) return l.substr(base.size());
  return l;
}

std::optional<uint64_t> ParseUploadRange(std::string_view r) {
  if (r.substr(0, 6) == "bytes=") r.remove_prefix(6);
  if (r.size() < 3 || r.substr(0, 2) != "0-") return std::nullopt;
  r.remove_prefix(2);
  uint64_t end = 0;
  for (char c : r) {
    if (c < '0' || c > '9') return std::nullopt;
    if (end > (UINT64_MAX - 1 - static_cast<uint64_t>(c - '0')) / 10) return std::nullopt;
    end = end * 10 + static_cast<uint64_t>(c - '0');
  }
  if (r.size() > 20) return std::nullopt;
  return end + 1;
}

Status CheckManifestDigest(std::string_view answered, const Digest& expected) {
  if (answered.empty() || answered == expected.str()) return Status::Ok();
  return Status::Corruption("registry stored the manifest as " + Shown(answered) + ", expected " +
                            expected.str());
}

Result<PushResult> PushImage(const Store& store, const Digest& id, const Reference& dest,
                             RegistryClient& client, const PushOptions& options) {
  IMGFS_ASSIGN_OR_RETURN(auto img, store.GetImage(id));
  if (!img) return Status::NotFound("no such image: " + id.str());
  IMGFS_ASSIGN_OR_RETURN(ExportManifest m, ManifestFor(store, *img));
  std::map<std::string, std::string> from;
  if (options.cross_mount) {
    IMGFS_ASSIGN_OR_RETURN(from, MountSources(store, dest));
  }
  // Reach the registry once first: an unreachable one is one error, not a retry per blob.
  IMGFS_RETURN_IF_ERROR(client.Base().status());
  Pusher p(client, dest, options);
  auto source = [&](const Digest& d) {
    auto it = from.find(d.hex());
    return it == from.end() ? std::string() : it->second;
  };
  for (const Descriptor& l : m.parsed.layers) {
    IMGFS_RETURN_IF_ERROR(p.PushBlob(store, l.digest, l.size, source(l.digest)));
  }
  IMGFS_RETURN_IF_ERROR(p.PushBlob(store, m.parsed.config.digest, m.parsed.config.size,
                                   source(m.parsed.config.digest)));
  return p.PushManifest(m);
}

}  // namespace imgfs
