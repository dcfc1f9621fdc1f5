#include "registry/reference.h"

#include <cctype>

#include "index/names.h"

namespace imgfs {
namespace {

constexpr size_t kNameTotalLengthMax = 255;
constexpr std::string_view kDefaultDomain = "docker.io";
constexpr std::string_view kLegacyDefaultDomain = "index.docker.io";

bool IsLowerAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
bool IsAlnum(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0;
}
bool IsWord(char c) {
  return IsAlnum(c) || c == '_';
}

bool IsDomainComponent(std::string_view c) {
  if (c.empty() || !IsAlnum(c.front()) || !IsAlnum(c.back())) return false;
  for (char ch : c) {
    if (!IsAlnum(ch) && ch != '-') return false;
  }
  return true;
}

Status FormatError(std::string_view s, const std::string& why = "") {
  std::string m = "invalid reference format";
  if (!why.empty()) m += ": " + why;
  return Status::InvalidArgument(m + " (\"" + std::string(s.substr(0, 300)) + "\")");
}

}  // namespace

bool IsValidPathComponent(std::string_view c) {
  if (c.empty() || !IsLowerAlnum(c.front()) || !IsLowerAlnum(c.back())) return false;
  size_t i = 0;
  while (i < c.size()) {
    if (IsLowerAlnum(c[i])) {
      i++;
      continue;
    }
    size_t j = i;
    while (j < c.size() && !IsLowerAlnum(c[j])) j++;
    std::string_view sep = c.substr(i, j - i);
    bool ok = sep == "." || sep == "_" || sep == "__" ||
              sep.find_first_not_of('-') == std::string_view::npos;
    if (!ok) return false;
    i = j;
  }
  return true;
}

bool IsValidDomain(std::string_view d) {
  std::string_view host = d;
  size_t colon = d.find(':');
  if (colon != std::string_view::npos) {
    std::string_view port = d.substr(colon + 1);
    if (port.empty()) return false;
    for (char c : port) {
      if (c < '0' || c > '9') return false;
    }
    host = d.substr(0, colon);
  }
  if (host.empty()) return false;
  size_t start = 0;
  for (;;) {
    size_t dot = host.find('.', start);
    std::string_view comp = host.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (!IsDomainComponent(comp)) return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

bool IsValidTag(std::string_view tag) {
  if (tag.empty() || tag.size() > 128 || !IsWord(tag.front())) return false;
  for (char c : tag) {
    if (!IsWord(c) && c != '.' && c != '-') return false;
  }
  return true;
}

// FamiliarizeName(Name()) without building Name(): only docker.io names change.
std::string Reference::FamiliarName() const {
  if (domain != kDefaultDomain) return Name();
  if (path.compare(0, 8, "library/") == 0 && path.find('/', 8) == std::string::npos)
    return path.substr(8);
  return path;
}

std::string Reference::String() const {
  std::string s = Name();
  if (!tag.empty()) s += ":" + tag;
  if (!digest.empty()) s += "@" + digest;
  return s;
}

std::string Reference::FamiliarString() const {
  std::string s = FamiliarName();
  if (!tag.empty()) s += ":" + tag;
  if (!digest.empty()) s += "@" + digest;
  return s;
}

Reference Reference::Normalized() const {
  Reference r = *this;
  if (!r.digest.empty()) {
    r.tag.clear();
  } else if (r.tag.empty()) {
    r.tag = "latest";
  }
  return r;
}

Result<Reference> ParseReference(std::string_view s) {
  if (s.empty()) return FormatError(s, "repository name must have at least one component");
  if (s.size() == 64 && IsLowerHex(s)) {
    return Status::InvalidArgument("invalid repository name (" + std::string(s) +
                                   "), cannot specify 64-byte hexadecimal strings");
  }
  // Split the registry host the way docker's splitDockerDomain does.
  std::string domain;
  std::string_view remainder;
  size_t slash = s.find('/');
  std::string_view first = slash == std::string_view::npos ? s : s.substr(0, slash);
  bool first_is_lower = true;
  for (char c : first) {
    if (c >= 'A' && c <= 'Z') first_is_lower = false;
  }
  if (slash == std::string_view::npos || (first.find_first_of(".:") == std::string_view::npos &&
                                          first != "localhost" && first_is_lower)) {
    domain = kDefaultDomain;
    remainder = s;
  } else {
    domain = std::string(first);
    remainder = s.substr(slash + 1);
  }
  if (domain == kLegacyDefaultDomain) domain = kDefaultDomain;

  // Digest, then tag (the last ':' after the last '/').
  Reference ref;
  std::string_view named = remainder;
  size_t at = remainder.find('@');
  if (at != std::string_view::npos) {
    auto d = Digest::Parse(remainder.substr(at + 1));
    if (!d.ok()) return FormatError(s, d.status().message());
    ref.digest = d->str();
    named = remainder.substr(0, at);
  }
  std::string_view repo = named;
  size_t last_slash = named.rfind('/');
  size_t colon = named.find(':', last_slash == std::string_view::npos ? 0 : last_slash);
  if (colon != std::string_view::npos) {
    std::string_view tag = named.substr(colon + 1);
    if (!IsValidTag(tag)) return FormatError(s, "invalid tag \"" + std::string(tag) + "\"");
    ref.tag = std::string(tag);
    repo = named.substr(0, colon);
  }
  for (char c : repo) {
    if (c >= 'A' && c <= 'Z') {
      return Status::InvalidArgument(
          "invalid reference format: repository name must be lowercase (\"" +
          std::string(s.substr(0, 300)) + "\")");
    }
  }
  if (!IsValidDomain(domain)) return FormatError(s, "invalid registry host \"" + domain + "\"");
  if (repo.empty()) return FormatError(s, "repository name must have at least one component");
  size_t start = 0;
  for (;;) {
    size_t sl = repo.find('/', start);
    std::string_view comp = repo.substr(start, sl == std::string_view::npos ? sl : sl - start);
    if (!IsValidPathComponent(comp)) return FormatError(s);
    if (sl == std::string_view::npos) break;
    start = sl + 1;
  }
  ref.domain = domain;
  ref.path = std::string(repo);
  if (ref.domain == kDefaultDomain && ref.path.find('/') == std::string::npos) {
    ref.path = "library/" + ref.path;
  }
  if (ref.domain.size() + 1 + ref.path.size() > kNameTotalLengthMax) {  // Name()'s length
    return Status::InvalidArgument(
        "invalid reference format: repository name must not be more than 255 characters");
  }
  return ref;
}

Result<Reference> ParseDockerRef(std::string_view s) {
  IMGFS_ASSIGN_OR_RETURN(Reference r, ParseReference(s));
  return r.Normalized();
}

}  // namespace imgfs
