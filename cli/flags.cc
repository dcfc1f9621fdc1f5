// Strict flag parsing (cli/flags.h).
#include "cli/flags.h"

#include <algorithm>

namespace imgfs {

namespace {

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// The flags that open an option line of a help text: "  -q, --quiet   ..." gives -q and
// --quiet, "  --digests   ..." gives --digests. Only the line's leading flag list counts.
std::vector<std::string> OptionLineFlags(const std::string& help) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < help.size()) {
    size_t nl = help.find('\n', at);
    std::string line = help.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
    at = nl == std::string::npos ? help.size() : nl + 1;
    size_t i = line.find_first_not_of(' ');
    if (i == std::string::npos || i == 0 || line[i] != '-') continue;
    // "-q, --quiet VALUE   text": words up to two spaces.
    std::string head = line.substr(i, line.find("  ", i) - i);
    size_t p = 0;
    while (p < head.size()) {
      size_t e = head.find_first_of(", ", p);
      std::string w = head.substr(p, e == std::string::npos ? std::string::npos : e - p);
      if (w.size() > 1 && w[0] == '-') out.push_back(w);
      if (e == std::string::npos) break;
      p = e + 1;
    }
  }
  return out;
}

}  // namespace

FlagTable FlagsOf(const Command& c) {
  FlagTable t;
  t.value_flags = c.value_flags;
  t.bool_flags = c.bool_flags;
  if (t.bool_flags.empty()) {
    for (const std::string& f : OptionLineFlags(c.summary)) {
      if (f.rfind("--", 0) == 0 && !Contains(t.value_flags, f)) t.bool_flags.push_back(f);
    }
  }
  for (const auto& [alias, target] : c.aliases) {
    if (!Contains(t.value_flags, target) && !Contains(t.bool_flags, target))
      t.bool_flags.push_back(target);
  }
  return t;
}

Result<bool> ParseBoolFlag(const std::string& flag, const std::string& v) {
  if (v == "1" || v == "t" || v == "T" || v == "TRUE" || v == "true" || v == "True") return true;
  if (v == "0" || v == "f" || v == "F" || v == "FALSE" || v == "false" || v == "False")
    return false;
  return Status::InvalidArgument("invalid value \"" + v + "\" for " + flag +
                                 ": want true or false");
}

Result<Args> ParseFlags(const Command& c, const std::vector<std::string>& words, bool* help) {
  const FlagTable t = FlagsOf(c);
  const std::string name = c.name;
  auto usage = [&](const std::string& msg) { return Status::InvalidArgument(name + ": " + msg); };
  Args a;
  *help = false;
  bool only_pos = false;
  for (size_t i = 0; i < words.size(); i++) {
    std::string s = words[i];
    if (only_pos || s == "-" || s.empty() || s[0] != '-') {
      a.pos.push_back(s);
      continue;
    }
    if (s == "--") {
      only_pos = true;
      continue;
    }
    if (s == "-h" || s == "--help") {
      *help = true;
      return a;
    }
    std::string value;
    bool has_value = false;
    if (size_t eq = s.find('='); eq != std::string::npos) {
      // "--flag=v", and "-x=v" for a one-letter alias (pflag's form).
      if (s.rfind("--", 0) != 0 && eq != 2)
        return usage("unknown flag " + s + " (see imgfs " + name + " --help)");
      value = s.substr(eq + 1);
      s = s.substr(0, eq);
      has_value = true;
    }
    std::vector<std::string> flags;
    if (auto al = c.aliases.find(s); al != c.aliases.end()) {
      flags.push_back(al->second);
    } else if (s.rfind("--", 0) != 0 && s.size() > 2) {  // -lR
      for (size_t k = 1; k < s.size(); k++) {
        auto al2 = c.aliases.find(std::string("-") + s[k]);
        if (al2 == c.aliases.end())
          return usage(std::string("unknown flag -") + s[k] + " (see --help)");
        // Only the last letter of a group may take a value (-qf FORMAT).
        if (Contains(t.value_flags, al2->second) && k + 1 < s.size())
          return usage(std::string("-") + s[k] + " takes a value: give it on its own");
        flags.push_back(al2->second);
      }
    } else {
      flags.push_back(s);
    }
    for (const std::string& f : flags) {
      bool takes = Contains(t.value_flags, f);
      if (!takes && !Contains(t.bool_flags, f))
        return usage("unknown flag " + f + " (see imgfs " + name + " --help)");
      if (takes && !has_value) {
        if (i + 1 >= words.size()) return usage(f + " needs a value");
        value = words[++i];
      }
      if (!takes) {
        bool on = true;
        if (has_value) {
          auto b = ParseBoolFlag(f, value);
          if (!b.ok()) return usage(b.status().message());
          on = *b;
        }
        a.opts.erase(f);
        a.all.erase(f);
        a.off.erase(f);
        if (!on) {
          a.off.insert(f);
          continue;
        }
        value.clear();
      }
      a.opts[f] = value;
      a.all.emplace(f, value);
    }
  }
  return a;
}

}  // namespace imgfs
