// The template parser (cli/go_template_internal.h): text and {{actions}} to a tree of
// TemplateNode, with Go's syntax errors ("template: :LINE:COL: WHAT").
#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "cli/go_template_internal.h"

namespace imgfs {
namespace gotmpl {
namespace {

using Node = TemplateNode;
using NK = TemplateNode::Kind;

constexpr int kMaxDepth = 100;

bool IsIdent(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

class Parser {
 public:
  explicit Parser(std::string_view src) : src_(src) {}

  Status ParseAll(Node* root) {
    root->kind = NK::kList;
    std::string term;
    IMGFS_RETURN_IF_ERROR(ParseList(&root->list, &term, 0));
    if (!term.empty()) return Err(term_pos_, "unexpected {{" + term + "}}");
    return Status::Ok();
  }

 private:
  Status Err(size_t pos, const std::string& msg) const {
    return Status::InvalidArgument(Where(src_, pos) + msg);
  }
  char At(size_t i) const { return i < src_.size() ? src_[i] : '\0'; }
  void SkipSpaces() {
    while (p_ < src_.size() && IsSpace(src_[p_])) p_++;
  }
  // At "}}" or " -}}": consumes it.
  bool AtClose(bool consume) {
    size_t q = p_;
    bool trim = false;
    if (At(q) == '-' && At(q + 1) == '}' && At(q + 2) == '}' && q > 0 && IsSpace(src_[q - 1])) {
      trim = true;
      q++;
    }
    if (At(q) != '}' || At(q + 1) != '}') return false;
    if (consume) {
      p_ = q + 2;
      trim_next_ = trim;
    }
    return true;
  }
  Status ExpectClose() {
    SkipSpaces();
    if (!AtClose(true)) {
      if (p_ >= src_.size()) return Err(p_, "unclosed action");
      return Err(p_, std::string("unexpected \"") + src_[p_] + "\" in action");
    }
    return Status::Ok();
  }
  std::string Word() {
    size_t s = p_;
    while (p_ < src_.size() && IsIdent(src_[p_])) p_++;
    return std::string(src_.substr(s, p_ - s));
  }

  // Text and actions up to {{end}}, {{else}} or the end; *term says which ("" at the end).
  Status ParseList(std::vector<Node>* out, std::string* term, int depth) {
    if (depth > kMaxDepth) return Err(p_, "nested too deeply");
    for (;;) {
      size_t at = src_.find("{{", p_);
      std::string_view text =
          src_.substr(p_, at == std::string_view::npos ? std::string_view::npos : at - p_);
      bool ltrim = at != std::string_view::npos && At(at + 2) == '-' && IsSpace(At(at + 3));
      if (trim_next_) {
        while (!text.empty() && IsSpace(text.front())) text.remove_prefix(1);
        trim_next_ = false;
      }
      if (ltrim) {
        while (!text.empty() && IsSpace(text.back())) text.remove_suffix(1);
      }
      if (!text.empty()) {
        Node n;
        n.kind = NK::kText;
        n.pos = p_;
        n.text = std::string(text);
        out->push_back(std::move(n));
      }
      if (at == std::string_view::npos) {
        p_ = src_.size();
        term->clear();
        return Status::Ok();
      }
      size_t action = at;
      p_ = at + (ltrim ? 4 : 2);
      SkipSpaces();
      if (src_.substr(p_, 2) == "/*") {
        size_t e = src_.find("*/", p_ + 2);
        if (e == std::string_view::npos) return Err(action, "unclosed comment");
        p_ = e + 2;
        if (!AtClose(true)) {
          SkipSpaces();
          if (!AtClose(true)) return Err(p_, "comment ends before closing delimiter");
        }
        continue;
      }
      size_t kw_pos = p_;
      std::string kw = Word();
      if (kw == "end") {
        IMGFS_RETURN_IF_ERROR(ExpectClose());
        *term = "end";
        term_pos_ = action;
        return Status::Ok();
      }
      if (kw == "else") {
        SkipSpaces();
        size_t save = p_;
        std::string next = Word();
        else_if_ = next == "if" || next == "with";
        else_kind_ = next;
        if (!else_if_) {
          p_ = save;
          IMGFS_RETURN_IF_ERROR(ExpectClose());
        }
        *term = "else";
        term_pos_ = action;
        return Status::Ok();
      }
      if (kw == "if" || kw == "range" || kw == "with") {
        Node n;
        IMGFS_RETURN_IF_ERROR(ParseControl(&n, kw, action, depth));
        out->push_back(std::move(n));
        continue;
      }
      if (kw == "break" || kw == "continue") {
        if (range_depth_ == 0) return Err(action, "{{" + kw + "}} outside {{range}}");
        IMGFS_RETURN_IF_ERROR(ExpectClose());
        Node n;
        n.kind = kw == "break" ? NK::kBreak : NK::kContinue;
        n.pos = action;
        out->push_back(std::move(n));
        continue;
      }
      if (kw == "define" || kw == "template" || kw == "block")
        return Err(kw_pos, "{{" + kw + "}} is not supported");
      p_ = kw_pos;
      Node n;
      n.kind = NK::kAction;
      n.pos = action;
      IMGFS_RETURN_IF_ERROR(ParsePipeline(&n.pipe, false, depth));
      IMGFS_RETURN_IF_ERROR(ExpectClose());
      out->push_back(std::move(n));
    }
  }

  // After "{{if", "{{range" or "{{with": the pipeline, the body, {{else}} and {{end}}.
  Status ParseControl(Node* n, const std::string& kw, size_t action, int depth) {
    n->kind = kw == "if" ? NK::kIf : kw == "range" ? NK::kRange : NK::kWith;
    n->pos = action;
    IMGFS_RETURN_IF_ERROR(ParsePipeline(&n->pipe, kw == "range", depth));
    IMGFS_RETURN_IF_ERROR(ExpectClose());
    std::string term;
    if (kw == "range") range_depth_++;
    Status st = ParseList(&n->list, &term, depth + 1);
    if (kw == "range") range_depth_--;
    IMGFS_RETURN_IF_ERROR(st);
    if (term.empty()) return Err(action, "unexpected EOF: {{" + kw + "}} has no {{end}}");
    if (term == "else") {
      if (else_if_) {
        std::string k2 = else_kind_;
        else_if_ = false;
        Node nested;
        IMGFS_RETURN_IF_ERROR(ParseControl(&nested, k2, term_pos_, depth + 1));
        n->else_list.push_back(std::move(nested));
        return Status::Ok();  // the nested {{else if}} consumed the shared {{end}}
      }
      IMGFS_RETURN_IF_ERROR(ParseList(&n->else_list, &term, depth + 1));
      if (term.empty()) return Err(action, "unexpected EOF: {{" + kw + "}} has no {{end}}");
      if (term != "end") return Err(term_pos_, "expected {{end}}, got {{" + term + "}}");
    }
    return Status::Ok();
  }

  Status ParsePipeline(Pipeline* pl, bool range, int depth) {
    if (depth > kMaxDepth) return Err(p_, "nested too deeply");
    SkipSpaces();
    pl->pos = p_;
    // Declarations: "$x :=", "$x =", "$i, $e :=" (range only).
    if (At(p_) == '$') {
      size_t save = p_;
      std::vector<std::string> vars;
      for (;;) {
        size_t s = p_;
        p_++;
        while (IsIdent(At(p_))) p_++;
        vars.emplace_back(src_.substr(s, p_ - s));
        SkipSpaces();
        if (At(p_) == ',' && range && vars.size() == 1) {
          p_++;
          SkipSpaces();
          if (At(p_) != '$') return Err(p_, "expected a variable after ','");
          continue;
        }
        break;
      }
      if (At(p_) == ':' && At(p_ + 1) == '=') {
        p_ += 2;
        pl->decl = vars;
      } else if (At(p_) == '=' && At(p_ + 1) != '=') {
        p_ += 1;
        pl->decl = vars;
        pl->assign = true;
      } else if (vars.size() > 1) {
        return Err(p_, "expected := after the range variables");
      } else {
        p_ = save;
      }
    }
    for (;;) {
      Command c;
      IMGFS_RETURN_IF_ERROR(ParseCommand(&c, depth));
      pl->cmds.push_back(std::move(c));
      SkipSpaces();
      if (At(p_) != '|') break;
      p_++;
    }
    return Status::Ok();
  }

  bool AtCommandEnd() {
    SkipSpaces();
    return p_ >= src_.size() || At(p_) == '|' || At(p_) == ')' || AtClose(false);
  }

  Status ParseCommand(Command* c, int depth) {
    SkipSpaces();
    c->pos = p_;
    while (!AtCommandEnd()) {
      size_t before = p_;
      Arg a;
      IMGFS_RETURN_IF_ERROR(ParseOperand(&a, depth));
      c->args.push_back(std::move(a));
      // Operands are separated by spaces.
      if (p_ < src_.size() && !IsSpace(src_[p_]) && At(p_) != '|' && At(p_) != ')' &&
          !AtClose(false)) {
        return Err(p_, std::string("unexpected \"") + src_[p_] + "\" in operand");
      }
      if (p_ == before) return Err(p_, "parser made no progress");
    }
    c->end = p_;
    if (p_ >= src_.size()) return Err(p_, "unclosed action");
    if (c->args.empty()) return Err(p_, "missing value for command");
    if (c->args[0].kind == ArgKind::kNil) return Err(c->pos, "nil is not a command");
    if (c->args[0].kind != ArgKind::kFunc && c->args.size() > 1)
      return Err(c->args[1].pos, "can't give argument to non-function");
    return Status::Ok();
  }

  void FieldChain(std::vector<std::string>* fields) {
    while (At(p_) == '.' && IsIdent(At(p_ + 1)) &&
           !std::isdigit(static_cast<unsigned char>(At(p_ + 1)))) {
      p_++;
      fields->push_back(Word());
    }
  }

  Status ParseOperand(Arg* a, int depth) {
    a->pos = p_;
    char c = At(p_);
    if (c == '.' && IsIdent(At(p_ + 1)) && !std::isdigit(static_cast<unsigned char>(At(p_ + 1)))) {
      a->kind = ArgKind::kField;
      FieldChain(&a->fields);
      return Status::Ok();
    }
    if (c == '.' && !std::isdigit(static_cast<unsigned char>(At(p_ + 1)))) {
      a->kind = ArgKind::kDot;
      p_++;
      return Status::Ok();
    }
    if (c == '$') {
      size_t s = p_++;
      while (IsIdent(At(p_))) p_++;
      a->kind = ArgKind::kVar;
      a->name = std::string(src_.substr(s, p_ - s));
      FieldChain(&a->fields);
      return Status::Ok();
    }
    if (c == '"') return ParseString(a);
    if (c == '`') {
      size_t e = src_.find('`', p_ + 1);
      if (e == std::string_view::npos) return Err(p_, "unterminated raw quoted string");
      a->kind = ArgKind::kString;
      a->str = std::string(src_.substr(p_ + 1, e - p_ - 1));
      p_ = e + 1;
      return Status::Ok();
    }
    if (std::isdigit(static_cast<unsigned char>(c)) ||
        ((c == '-' || c == '+' || c == '.') &&
         std::isdigit(static_cast<unsigned char>(At(p_ + 1)))))
      return ParseNumber(a);
    if (c == '(') {
      p_++;
      a->kind = ArgKind::kPipe;
      a->pipe = std::make_shared<Pipeline>();
      IMGFS_RETURN_IF_ERROR(ParsePipeline(a->pipe.get(), false, depth + 1));
      SkipSpaces();
      if (At(p_) != ')') return Err(p_, "unclosed left paren");
      p_++;
      FieldChain(&a->fields);
      return Status::Ok();
    }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      std::string w = Word();
      if (w == "true" || w == "false") {
        a->kind = ArgKind::kBool;
        a->b = w == "true";
      } else if (w == "nil") {
        a->kind = ArgKind::kNil;
      } else if (Functions().count(w)) {
        a->kind = ArgKind::kFunc;
        a->name = w;
      } else if (w == "if" || w == "range" || w == "with" || w == "else" || w == "end") {
        return Err(a->pos, "unexpected <" + w + "> in command");
      } else {
        return Err(a->pos, "function \"" + w + "\" not defined");
      }
      return Status::Ok();
    }
    return Err(p_, std::string("unexpected \"") + c + "\" in operand");
  }

  Status ParseString(Arg* a) {
    size_t start = p_++;
    std::string s;
    for (;;) {
      if (p_ >= src_.size() || src_[p_] == '\n') return Err(start, "unterminated quoted string");
      char c = src_[p_++];
      if (c == '"') break;
      if (c != '\\') {
        s += c;
        continue;
      }
      char e = At(p_++);
      switch (e) {
        case 'n':
          s += '\n';
          break;
        case 't':
          s += '\t';
          break;
        case 'r':
          s += '\r';
          break;
        case 'a':
          s += '\a';
          break;
        case 'b':
          s += '\b';
          break;
        case 'f':
          s += '\f';
          break;
        case 'v':
          s += '\v';
          break;
        case '\\':
        case '"':
        case '\'':
          s += e;
          break;
        case 'x': {
          int v = 0;
          for (int k = 0; k < 2; k++) {
            char h = At(p_++);
            if (!std::isxdigit(static_cast<unsigned char>(h)))
              return Err(p_ - 1, "bad \\x escape in quoted string");
            v = v * 16 +
                (std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (h | 32) - 'a' + 10);
          }
          s += static_cast<char>(v);
          break;
        }
        case 'u': {
          uint32_t v = 0;
          for (int k = 0; k < 4; k++) {
            char h = At(p_++);
            if (!std::isxdigit(static_cast<unsigned char>(h)))
              return Err(p_ - 1, "bad \\u escape in quoted string");
            v = v * 16 +
                (std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (h | 32) - 'a' + 10);
          }
          if (v >= 0xD800 && v < 0xE000) v = 0xFFFD;
          if (v < 0x80) {
            s += static_cast<char>(v);
          } else if (v < 0x800) {
            s += static_cast<char>(0xC0 | (v >> 6));
            s += static_cast<char>(0x80 | (v & 0x3F));
          } else {
            s += static_cast<char>(0xE0 | (v >> 12));
            s += static_cast<char>(0x80 | ((v >> 6) & 0x3F));
            s += static_cast<char>(0x80 | (v & 0x3F));
          }
          break;
        }
        default:
          return Err(p_ - 2, "unknown escape sequence in quoted string");
      }
    }
    a->kind = ArgKind::kString;
    a->str = std::move(s);
    return Status::Ok();
  }

  Status ParseNumber(Arg* a) {
    size_t s = p_;
    if (At(p_) == '-' || At(p_) == '+') p_++;
    while (IsIdent(At(p_)) || At(p_) == '.' ||
           ((At(p_) == '-' || At(p_) == '+') && (At(p_ - 1) == 'e' || At(p_ - 1) == 'E')))
      p_++;
    std::string t(src_.substr(s, p_ - s));
    const char* b = t.c_str();
    char* end = nullptr;
    errno = 0;
    bool hex = t.find("0x") != std::string::npos || t.find("0X") != std::string::npos;
    if (t.find_first_of(".eE") == std::string::npos || hex) {
      long long v = std::strtoll(b, &end, 0);
      if (*end == '\0' && errno == 0) {
        a->kind = ArgKind::kInt;
        a->i = v;
        return Status::Ok();
      }
      errno = 0;
      unsigned long long u = std::strtoull(b, &end, 0);
      if (*end == '\0' && errno == 0 && t[0] != '-') {
        a->kind = ArgKind::kUint;
        a->u = u;
        return Status::Ok();
      }
      return Err(s, "bad number syntax: \"" + t + "\"");
    }
    double d = std::strtod(b, &end);
    if (*end != '\0' || errno != 0) return Err(s, "bad number syntax: \"" + t + "\"");
    a->kind = ArgKind::kFloat;
    a->f = d;
    return Status::Ok();
  }

  std::string_view src_;
  size_t p_ = 0;
  bool trim_next_ = false;
  bool else_if_ = false;
  std::string else_kind_;
  size_t term_pos_ = 0;
  int range_depth_ = 0;
};

}  // namespace

Status ParseTemplate(std::string_view src, TemplateNode* root) {
  Parser p(src);
  return p.ParseAll(root);
}

}  // namespace gotmpl
}  // namespace imgfs
