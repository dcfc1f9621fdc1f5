// Helpers shared by the subcommands (cli/cli_common.h).
#include "cli/cli_common.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace imgfs {

void Die(const std::string& msg, int code) {
  std::fprintf(stderr, "imgfs: %s\n", msg.c_str());
  std::exit(code);
}

int Fail(const Status& st, const std::string& context) {
  std::fprintf(stderr, "imgfs: %s\n",
               (context.empty() ? st : st.WithContext(context)).message().c_str());
  return 1;
}

std::string DefaultRoot() {
  if (const char* e = std::getenv("IMGFS_ROOT"); e && *e) return e;
  if (::geteuid() == 0) return "/var/lib/imgfs";
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x) return std::string(x) + "/imgfs";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.local/share/imgfs";
}

std::unique_ptr<Store> OpenStore(const std::string& root) {
  auto s = Store::Open(root);
  if (!s.ok()) Die(s.status().message());
  return std::move(*s);
}

// "3 weeks ago", as docker's units.HumanDuration.
std::string HumanSince(int64_t t) {
  int64_t s = ::time(nullptr) - t;
  if (s < 1) return "Less than a second ago";
  if (s == 1) return "1 second ago";
  if (s < 60) return std::to_string(s) + " seconds ago";
  int64_t m = s / 60, h = s / 3600;
  if (m == 1) return "About a minute ago";
  if (m < 60) return std::to_string(m) + " minutes ago";
  if (h == 1) return "About an hour ago";
  if (h < 48) return std::to_string(h) + " hours ago";
  if (h < 24 * 7 * 2) return std::to_string(h / 24) + " days ago";
  if (h < 24 * 30 * 2) return std::to_string(h / 24 / 7) + " weeks ago";
  if (h < 24 * 365 * 2) return std::to_string(h / 24 / 30) + " months ago";
  return std::to_string(h / 24 / 365) + " years ago";
}

// "4.26MB", as docker's units.HumanSizeWithPrecision(size, precision) (decimal units).
std::string HumanSize(double v, int precision) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  int i = 0;
  while (v >= 1000 && i < 5) {
    v /= 1000;
    i++;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*g%s", precision, v, units[i]);
  return buf;
}

// Resolves what a user typed to an image: a reference first, then an ID (prefix).
Result<Digest> ResolveImage(const Store& store, const std::string& s) {
  bool pinned = s.rfind("sha256:", 0) == 0;  // "sha256:<hex prefix>" is always an ID
  std::string hex = pinned ? s.substr(7) : s;
  bool may_be_id = !hex.empty() && hex.size() <= 64 && IsLowerHex(hex);
  // Result: the one image whose ID starts with hex, NotFound, or ambiguous.
  auto by_prefix = [&]() -> Result<Digest> {
    IMGFS_ASSIGN_OR_RETURN(auto ids, store.FindImagesByPrefix(hex));
    if (ids.size() > 1) return Status::InvalidArgument("ambiguous image ID prefix " + s);
    if (ids.empty()) return Status::NotFound("no such image: " + s);
    return ids[0];
  };
  auto ref = ParseDockerRef(s);
  if (may_be_id && (pinned || !ref.ok())) return by_prefix();
  if (!ref.ok()) return ref.status();
  // docker's order: a name first, then an ID prefix ("abc" may be both).
  IMGFS_ASSIGN_OR_RETURN(auto rec, store.GetRef(ref->String()));
  if (rec) return Digest::FromHex(rec->image_id);
  if (may_be_id) return by_prefix();
  return Status::NotFound("no such image: " + s);
}

Result<std::unordered_map<std::string, Names>> NamesByImage(const Store& store) {
  IMGFS_ASSIGN_OR_RETURN(auto refs, store.ListRefs());
  std::unordered_map<std::string, Names> out;
  out.reserve(refs.size());
  for (auto& [name, rec] : refs) {
    auto r = ParseReference(name);
    if (!r.ok()) continue;
    Names& n = out[std::move(rec.image_id)];
    (r->digest.empty() ? n.tags : n.digests).push_back(std::move(*r));
  }
  return out;
}

// "64M", "2G", "1048576" → bytes.
Result<uint64_t> ParseSize(const std::string& s) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || v < 0) return Status::InvalidArgument("bad size \"" + s + "\"");
  std::string unit = end;
  double mult = 1;
  if (unit == "k" || unit == "K" || unit == "KiB")
    mult = 1024.0;
  else if (unit == "m" || unit == "M" || unit == "MiB")
    mult = 1024.0 * 1024;
  else if (unit == "g" || unit == "G" || unit == "GiB")
    mult = 1024.0 * 1024 * 1024;
  else if (!unit.empty())
    return Status::InvalidArgument("bad size unit in \"" + s + "\"");
  return static_cast<uint64_t>(v * mult);
}

DockerFormat ParseFormatOrDie(const std::string& cmd, const std::string& format,
                              const std::string& default_table) {
  auto f = DockerFormat::Parse(format.empty() ? "table" : format, default_table);
  if (!f.ok()) Die(cmd + ": --format: " + f.status().message(), 2);
  return std::move(*f);
}

int PrintFormatted(const std::string& cmd, const DockerFormat& f,
                   const std::vector<TemplateValue>& rows, const TemplateValue& header) {
  auto out = f.Render(rows, header);
  if (!out.ok()) return Fail(out.status(), cmd + ": --format");
  std::fwrite(out->data(), 1, out->size(), stdout);
  return 0;
}

TemplateValue HeaderOf(const std::vector<std::pair<std::string, std::string>>& titles) {
  TemplateValue h = TemplateValue::Object();
  for (auto& [k, v] : titles) h.Set(k, TemplateValue::Str(v));
  return h;
}

std::string GoTimeString(int64_t t) {
  time_t tt = static_cast<time_t>(t);
  struct tm tm;
  if (!::localtime_r(&tt, &tm)) return "";
  char buf[96];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S %z %Z", &tm);
  return buf;
}

std::string GoTimeRfc3339(int64_t t) {
  time_t tt = static_cast<time_t>(t);
  struct tm tm;
  if (!::localtime_r(&tt, &tm)) return "";
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string s = buf;
  long off = tm.tm_gmtoff;
  if (off == 0) return s + "Z";
  char z[48];
  std::snprintf(z, sizeof z, "%c%02ld:%02ld", off < 0 ? '-' : '+', std::labs(off) / 3600,
                (std::labs(off) % 3600) / 60);
  return s + z;
}

}  // namespace imgfs
