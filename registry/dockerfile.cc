#include "registry/dockerfile.h"

#include <simdjson.h>

#include <algorithm>
#include <cctype>

namespace imgfs {
namespace {

bool IsBlank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

std::string_view TrimView(std::string_view s) {
  while (!s.empty() && IsBlank(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsBlank(s.back())) s.remove_suffix(1);
  return s;
}

bool IsNameStart(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}
bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

bool JsonForm(const std::string& cmd) {
  return cmd == "CMD" || cmd == "ENTRYPOINT" || cmd == "RUN" || cmd == "SHELL" || cmd == "COPY" ||
         cmd == "ADD" || cmd == "VOLUME";
}

// A parser directive line ("# name=value"): name lower-cased and value, or false.
bool Directive(std::string_view line, std::string* name, std::string* value) {
  line = TrimView(line);
  if (line.empty() || line.front() != '#') return false;
  line = TrimView(line.substr(1));
  size_t eq = line.find('=');
  if (eq == std::string_view::npos || eq == 0) return false;
  std::string_view n = TrimView(line.substr(0, eq));
  if (n.empty() || !std::all_of(n.begin(), n.end(), IsNameChar)) return false;
  name->assign(n);
  std::transform(name->begin(), name->end(), name->begin(),
                 [](unsigned char c) { return std::tolower(c); });
  value->assign(TrimView(line.substr(eq + 1)));
  return true;
}

std::string Escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"' || c == '\'' || IsBlank(c)) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

Status TooLarge(const std::string& what) {
  return Status::InvalidArgument("substitution makes " + what + " more than " +
                                 std::to_string(kMaxExpandedWord >> 20) + " MiB longer");
}

class Expander {
 public:
  Expander(std::string_view s, const BuildVars& vars, bool keep)
      : s_(s), vars_(vars), keep_(keep), limit_(s.size() + kMaxExpandedWord) {}

  // Processes up to the end, or (in_brace) up to an unmatched '}', which is consumed.
  Result<std::string> Run(bool in_brace) {
    std::string out;
    while (i_ < s_.size()) {
      char c = s_[i_];
      if (in_brace && c == '}') {
        i_++;
        return out;
      }
      if (out.size() > limit_) return TooLarge("a word");
      if (c == '\\') {
        if (i_ + 1 >= s_.size()) {
          out.push_back('\\');
          i_++;
          continue;
        }
        if (keep_) out.push_back('\\');
        out.push_back(s_[i_ + 1]);
        i_ += 2;
      } else if (c == '\'') {
        size_t end = s_.find('\'', i_ + 1);
        if (end == std::string_view::npos)
          return Status::InvalidArgument(
              "unexpected end of statement while looking for matching single-quote");
        if (keep_) out.push_back('\'');
        out.append(s_.substr(i_ + 1, end - i_ - 1));
        if (keep_) out.push_back('\'');
        i_ = end + 1;
      } else if (c == '"') {
        IMGFS_RETURN_IF_ERROR(DoubleQuoted(&out));
      } else if (c == '$') {
        IMGFS_RETURN_IF_ERROR(Dollar(&out));
      } else {
        out.push_back(c);
        i_++;
      }
    }
    if (in_brace) return Status::InvalidArgument("missing '}' in: " + std::string(s_));
    if (out.size() > limit_) return TooLarge("a word");
    return out;
  }

 private:
  Status DoubleQuoted(std::string* out) {
    if (keep_) out->push_back('"');
    i_++;
    while (i_ < s_.size() && s_[i_] != '"') {
      if (out->size() > limit_) return TooLarge("a word");
      char c = s_[i_];
      if (c == '\\' && i_ + 1 < s_.size()) {
        char n = s_[i_ + 1];
        if (n == '"' || n == '$' || n == '\\') {
          if (keep_) out->push_back('\\');
          out->push_back(n);
        } else {
          // A backslash before anything else is itself.
          if (keep_) out->push_back('\\');
          out->push_back('\\');
          out->push_back(n);
        }
        i_ += 2;
      } else if (c == '$') {
        IMGFS_RETURN_IF_ERROR(Dollar(out));
      } else {
        out->push_back(c);
        i_++;
      }
    }
    if (i_ >= s_.size()) {
      return Status::InvalidArgument(
          "unexpected end of statement while looking for matching double-quote");
    }
    if (keep_) out->push_back('"');
    i_++;
    return Status::Ok();
  }

  const std::string* Lookup(const std::string& name) {
    auto it = vars_.find(name);
    return it == vars_.end() ? nullptr : &it->second;
  }

  void Emit(std::string* out, std::string_view v) {
    if (keep_) {
      out->append(Escape(v));
    } else {
      out->append(v);
    }
  }

  Status Dollar(std::string* out) {
    i_++;  // '$'
    if (i_ < s_.size() && s_[i_] == '{') {
      i_++;
      size_t start = i_;
      while (i_ < s_.size() && IsNameChar(s_[i_])) i_++;
      std::string name(s_.substr(start, i_ - start));
      if (name.empty()) return Status::InvalidArgument("bad substitution in: " + std::string(s_));
      if (i_ >= s_.size()) return Status::InvalidArgument("missing '}' in: " + std::string(s_));
      const std::string* val = Lookup(name);
      if (s_[i_] == '}') {
        i_++;
        Emit(out, val ? *val : "");
        return Status::Ok();
      }
      bool colon = false;
      if (s_[i_] == ':') {
        colon = true;
        i_++;
      }
      if (i_ >= s_.size()) return Status::InvalidArgument("missing '}' in: " + std::string(s_));
      char mod = s_[i_++];
      if (mod != '-' && mod != '+' && mod != '?') {
        return Status::InvalidArgument(std::string("unsupported modifier (") + mod +
                                       ") in substitution: " + std::string(s_));
      }
      // The word is itself expanded (without quotes: it is a value), one level deeper.
      if (depth_ >= kMaxSubstitutionDepth) {
        return Status::InvalidArgument("substitutions nested more than " +
                                       std::to_string(kMaxSubstitutionDepth) + " deep");
      }
      Expander inner(s_, vars_, false);
      inner.i_ = i_;
      inner.depth_ = depth_ + 1;
      IMGFS_ASSIGN_OR_RETURN(std::string word, inner.Run(true));
      i_ = inner.i_;
      bool set = val != nullptr && (!colon || !val->empty());
      if (mod == '-') {
        Emit(out, set ? *val : word);
      } else if (mod == '+') {
        Emit(out, set ? word : "");
      } else {
        if (!set) {
          return Status::InvalidArgument(name + ": " +
                                         (word.empty() ? "is not allowed to be unset" : word));
        }
        Emit(out, *val);
      }
      return Status::Ok();
    }
    if (i_ < s_.size() && IsNameStart(s_[i_])) {
      size_t start = i_;
      while (i_ < s_.size() && IsNameChar(s_[i_])) i_++;
      const std::string* val = Lookup(std::string(s_.substr(start, i_ - start)));
      Emit(out, val ? *val : "");
      return Status::Ok();
    }
    out->push_back('$');
    return Status::Ok();
  }

  std::string_view s_;
  const BuildVars& vars_;
  bool keep_;
  size_t i_ = 0;
  size_t limit_;   // the longest result: the input plus kMaxExpandedWord
  int depth_ = 0;  // ${NAME:-word} nesting
};

}  // namespace

Result<std::string> ExpandWord(std::string_view word, const BuildVars& vars, bool keep_quotes) {
  return Expander(word, vars, keep_quotes).Run(false);
}

Result<std::vector<std::string>> ExpandWords(std::string_view s, const BuildVars& vars) {
  // Split on blanks outside quotes (a backslash escapes the next character).
  std::vector<std::string> raw;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < s.size(); i++) {
    char c = s[i];
    if (!quote && IsBlank(c)) {
      if (in_word) raw.push_back(std::move(cur));
      cur.clear();
      in_word = false;
      continue;
    }
    in_word = true;
    cur.push_back(c);
    if (c == '\\' && quote != '\'' && i + 1 < s.size()) {
      cur.push_back(s[++i]);
    } else if (quote && c == quote) {
      quote = 0;
    } else if (!quote && (c == '"' || c == '\'')) {
      quote = c;
    }
  }
  if (in_word) raw.push_back(std::move(cur));
  std::vector<std::string> out;
  size_t total = 0;  // each word is bounded; so is their sum ("$A $A $A ...")
  for (const auto& w : raw) {
    IMGFS_ASSIGN_OR_RETURN(std::string e, ExpandWord(w, vars, false));
    total += e.size();
    if (total > s.size() + kMaxExpandedWord) return TooLarge("the words");
    out.push_back(std::move(e));
  }
  return out;
}

bool ParseExecForm(std::string_view text, std::vector<std::string>* words) {
  if (text.empty() || text.front() != '[') return false;
  simdjson::dom::parser parser;
  simdjson::dom::array arr;
  if (parser.parse(text.data(), text.size()).get(arr) != simdjson::SUCCESS) return false;
  std::vector<std::string> v;
  for (auto el : arr) {
    std::string_view s;
    if (el.get(s) != simdjson::SUCCESS) return false;
    v.emplace_back(s);
  }
  *words = std::move(v);
  return true;
}

Result<std::vector<DockerInstruction>> ParseDockerfile(std::string_view text) {
  std::vector<std::string_view> lines;
  for (size_t at = 0; at <= text.size();) {
    size_t nl = text.find('\n', at);
    if (nl == std::string_view::npos) {
      if (at < text.size()) lines.push_back(text.substr(at));
      break;
    }
    lines.push_back(text.substr(at, nl - at));
    at = nl + 1;
  }
  std::vector<DockerInstruction> out;
  bool directives = true;
  for (size_t n = 0; n < lines.size(); n++) {
    std::string_view line = lines[n];
    if (n == 0 && line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);  // BOM
    std::string_view t = TrimView(line);
    if (directives) {
      std::string name, value;
      if (Directive(line, &name, &value)) {
        if (name == "escape" && value != "\\") {
          return Status::InvalidArgument("Dockerfile line " + std::to_string(n + 1) +
                                         ": escape directive '" + value +
                                         "' is not supported (only \\)");
        }
        continue;
      }
      directives = false;
    }
    if (t.empty() || t.front() == '#') continue;
    int start_line = static_cast<int>(n) + 1;
    std::string joined;
    for (;;) {
      std::string_view body = line;
      while (!body.empty() && IsBlank(body.back())) body.remove_suffix(1);
      if (!body.empty() && body.back() == '\\') {
        body.remove_suffix(1);
        joined.append(body);
        // Continue with the next line that is not a comment or empty.
        n++;
        while (n < lines.size()) {
          std::string_view nt = TrimView(lines[n]);
          if (!nt.empty() && nt.front() != '#') break;
          n++;
        }
        if (n >= lines.size()) break;  // a final continuation ends the instruction
        line = lines[n];
        continue;
      }
      joined.append(body);
      break;
    }
    std::string_view rest = TrimView(joined);
    if (rest.empty()) continue;  // only continuations: nothing (as docker)
    size_t sp = 0;
    while (sp < rest.size() && !IsBlank(rest[sp])) sp++;
    DockerInstruction ins;
    ins.line = start_line;
    ins.cmd = std::string(rest.substr(0, sp));
    std::transform(ins.cmd.begin(), ins.cmd.end(), ins.cmd.begin(),
                   [](unsigned char c) { return std::toupper(c); });
    ins.original = std::string(rest);
    rest = TrimView(rest.substr(sp));
    while (rest.size() > 2 && rest.substr(0, 2) == "--") {
      size_t e = 0;
      while (e < rest.size() && !IsBlank(rest[e])) e++;
      ins.flags.emplace_back(rest.substr(0, e));
      rest = TrimView(rest.substr(e));
    }
    ins.args = std::string(rest);
    if (JsonForm(ins.cmd)) ins.json = ParseExecForm(rest, &ins.json_args);
    out.push_back(std::move(ins));
    if (out.size() > kMaxInstructions) {
      return Status::InvalidArgument("Dockerfile has more than " +
                                     std::to_string(kMaxInstructions) + " instructions");
    }
  }
  return out;
}

}  // namespace imgfs
