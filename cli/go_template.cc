// Go text/template subset (cli/go_template.h): a hand-written parser to a small tree,
// and a tree walker with a step and output budget.
#include "cli/go_template.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <set>

#include <simdjson.h>

#include "index/json_writer.h"

namespace imgfs {

// ---------------------------------------------------------------- values

TemplateValue TemplateValue::Bool(bool b) {
  TemplateValue v;
  v.kind_ = Kind::kBool;
  v.b_ = b;
  return v;
}
TemplateValue TemplateValue::Int(int64_t x) {
  TemplateValue v;
  v.kind_ = Kind::kInt;
  v.i_ = x;
  return v;
}
TemplateValue TemplateValue::Uint(uint64_t x) {
  TemplateValue v;
  v.kind_ = Kind::kUint;
  v.u_ = x;
  return v;
}
TemplateValue TemplateValue::Float(double x) {
  TemplateValue v;
  v.kind_ = Kind::kFloat;
  v.f_ = x;
  return v;
}
TemplateValue TemplateValue::Str(std::string s) {
  TemplateValue v;
  v.kind_ = Kind::kString;
  v.s_ = std::move(s);
  return v;
}
TemplateValue TemplateValue::Array(std::vector<TemplateValue> items) {
  TemplateValue v;
  v.kind_ = Kind::kArray;
  v.items_ = std::move(items);
  return v;
}
TemplateValue TemplateValue::StrArray(const std::vector<std::string>& items) {
  TemplateValue v = Array();
  for (const std::string& s : items) v.items_.push_back(Str(s));
  return v;
}
TemplateValue TemplateValue::Object(bool is_struct) {
  TemplateValue v;
  v.kind_ = Kind::kObject;
  v.is_struct_ = is_struct;
  return v;
}
TemplateValue& TemplateValue::Set(const std::string& key, TemplateValue v) {
  if (TemplateValue* old = FindMutable(key)) {
    *old = std::move(v);
    return *this;
  }
  keys_.push_back(key);
  items_.push_back(std::move(v));
  return *this;
}
TemplateValue& TemplateValue::Push(TemplateValue v) {
  items_.push_back(std::move(v));
  return *this;
}
const TemplateValue* TemplateValue::Find(std::string_view key) const {
  if (kind_ != Kind::kObject) return nullptr;
  for (size_t i = 0; i < keys_.size(); i++) {
    if (keys_[i] == key) return &items_[i];
  }
  return nullptr;
}
TemplateValue* TemplateValue::FindMutable(std::string_view key) {
  return const_cast<TemplateValue*>(static_cast<const TemplateValue*>(this)->Find(key));
}

namespace {

using K = TemplateValue::Kind;

Result<TemplateValue> FromDom(simdjson::dom::element e, int depth) {
  if (depth > 200) return Status::InvalidArgument("JSON nested too deeply");
  switch (e.type()) {
    case simdjson::dom::element_type::ARRAY: {
      TemplateValue v = TemplateValue::Array();
      simdjson::dom::array arr;
      if (e.get_array().get(arr)) return Status::InvalidArgument("bad JSON array");
      for (auto x : arr) {
        IMGFS_ASSIGN_OR_RETURN(auto c, FromDom(x, depth + 1));
        v.Push(std::move(c));
      }
      return v;
    }
    case simdjson::dom::element_type::OBJECT: {
      TemplateValue v = TemplateValue::Object();
      simdjson::dom::object obj;
      if (e.get_object().get(obj)) return Status::InvalidArgument("bad JSON object");
      for (auto [k, x] : obj) {
        IMGFS_ASSIGN_OR_RETURN(auto c, FromDom(x, depth + 1));
        v.Set(std::string(k), std::move(c));
      }
      return v;
    }
    case simdjson::dom::element_type::INT64:
      return TemplateValue::Int(e.get_int64().value_unsafe());
    case simdjson::dom::element_type::UINT64:
      return TemplateValue::Uint(e.get_uint64().value_unsafe());
    case simdjson::dom::element_type::DOUBLE:
      return TemplateValue::Float(e.get_double().value_unsafe());
    case simdjson::dom::element_type::STRING:
      return TemplateValue::Str(std::string(e.get_string().value_unsafe()));
    case simdjson::dom::element_type::BOOL:
      return TemplateValue::Bool(e.get_bool().value_unsafe());
    case simdjson::dom::element_type::NULL_VALUE:
      return TemplateValue();
  }
  return TemplateValue();
}

std::string FormatFloat(double f) {
  if (std::isnan(f)) return "NaN";
  if (std::isinf(f)) return f > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, f);
  std::string s(buf, r.ptr);
  // Go's %v: exponent form with at least two digits and a sign ("1e+21").
  if (size_t e = s.find('e'); e != std::string::npos) {
    std::string mant = s.substr(0, e), ex = s.substr(e + 1);
    char sign = '+';
    if (!ex.empty() && (ex[0] == '-' || ex[0] == '+')) {
      sign = ex[0];
      ex = ex.substr(1);
    }
    if (ex.size() < 2) ex = "0" + ex;
    s = mant + "e" + sign + ex;
  }
  return s;
}

void WriteJson(JsonWriter& w, const TemplateValue& v, int depth) {
  if (depth > 500) {
    w.Null();
    return;
  }
  switch (v.kind()) {
    case K::kNull:
      w.Null();
      break;
    case K::kBool:
      w.Bool(v.b());
      break;
    case K::kInt:
      w.Int(v.i());
      break;
    case K::kUint:
      w.Uint(v.u());
      break;
    case K::kFloat:
      if (std::isfinite(v.f()))
        w.Raw(FormatFloat(v.f()));
      else
        w.Null();
      break;
    case K::kString:
      w.String(v.s());
      break;
    case K::kArray:
      w.BeginArray();
      for (const TemplateValue& x : v.items()) WriteJson(w, x, depth + 1);
      w.EndArray();
      break;
    case K::kObject: {
      std::vector<size_t> order(v.keys().size());
      for (size_t i = 0; i < order.size(); i++) order[i] = i;
      if (!v.is_struct())
        std::sort(order.begin(), order.end(),
                  [&](size_t a, size_t b) { return v.keys()[a] < v.keys()[b]; });
      w.BeginObject();
      for (size_t i : order) {
        w.Key(v.keys()[i]);
        WriteJson(w, v.items()[i], depth + 1);
      }
      w.EndObject();
      break;
    }
  }
}

void Print(std::string& out, const TemplateValue& v, bool nested, int depth) {
  if (depth > 500) return;
  switch (v.kind()) {
    case K::kNull:
      out += nested ? "<nil>" : "<nil>";
      break;
    case K::kBool:
      out += v.b() ? "true" : "false";
      break;
    case K::kInt:
      out += std::to_string(v.i());
      break;
    case K::kUint:
      out += std::to_string(v.u());
      break;
    case K::kFloat:
      out += FormatFloat(v.f());
      break;
    case K::kString:
      out += v.s();
      break;
    case K::kArray:
      out += "[";
      for (size_t i = 0; i < v.items().size(); i++) {
        if (i) out += " ";
        Print(out, v.items()[i], true, depth + 1);
      }
      out += "]";
      break;
    case K::kObject: {
      if (v.is_struct()) {
        out += "{";
        for (size_t i = 0; i < v.items().size(); i++) {
          if (i) out += " ";
          Print(out, v.items()[i], true, depth + 1);
        }
        out += "}";
        break;
      }
      std::vector<size_t> order(v.keys().size());
      for (size_t i = 0; i < order.size(); i++) order[i] = i;
      std::sort(order.begin(), order.end(),
                [&](size_t a, size_t b) { return v.keys()[a] < v.keys()[b]; });
      out += "map[";
      bool first = true;
      for (size_t i : order) {
        if (!first) out += " ";
        first = false;
        out += v.keys()[i] + ":";
        Print(out, v.items()[i], true, depth + 1);
      }
      out += "]";
      break;
    }
  }
}

}  // namespace

Result<TemplateValue> TemplateValueFromJson(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(json);
  simdjson::dom::element root;
  if (auto err = parser.parse(padded).get(root))
    return Status::InvalidArgument(std::string("bad JSON: ") + simdjson::error_message(err));
  return FromDom(root, 0);
}

std::string TemplateValueToJson(const TemplateValue& v) {
  JsonWriter w;
  WriteJson(w, v, 0);
  return w.str();
}

std::string TemplateValuePrint(const TemplateValue& v) {
  std::string s;
  Print(s, v, false, 0);
  return s;
}

// ---------------------------------------------------------------- the tree

namespace {

struct Pipeline;

enum class ArgKind { kDot, kField, kVar, kString, kInt, kUint, kFloat, kBool, kNil, kFunc, kPipe };

struct Arg {
  ArgKind kind = ArgKind::kDot;
  size_t pos = 0;
  std::string name;                 // variable ("$x") or function name
  std::vector<std::string> fields;  // field chain after the base
  std::string str;
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0;
  bool b = false;
  std::shared_ptr<Pipeline> pipe;
};

struct Command {
  size_t pos = 0, end = 0;
  std::vector<Arg> args;
};

struct Pipeline {
  size_t pos = 0;
  std::vector<std::string> decl;
  bool assign = false;  // "=" rather than ":="
  std::vector<Command> cmds;
};

}  // namespace

struct TemplateNode {
  enum class Kind { kList, kText, kAction, kIf, kRange, kWith, kBreak, kContinue };
  Kind kind = Kind::kList;
  size_t pos = 0;
  std::string text;
  Pipeline pipe;
  std::vector<TemplateNode> list, else_list;
  std::shared_ptr<const std::string> src;  // the root keeps the template text
};

namespace {

using Node = TemplateNode;
using NK = TemplateNode::Kind;

constexpr int kMaxDepth = 100;

const std::set<std::string>& Functions() {
  static const std::set<std::string> f = {
      "json", "split", "join", "title", "lower", "upper", "pad",    "truncate",
      "and",  "or",    "not",  "len",   "index", "print", "printf", "println",
      "eq",   "ne",    "lt",   "le",    "gt",    "ge",    "slice",  "urlquery"};
  return f;
}

// "template: :LINE:COL: " for byte offset `pos` of `src`.
std::string Where(std::string_view src, size_t pos) {
  pos = std::min(pos, src.size());
  int line = 1, col = 1;
  for (size_t i = 0; i < pos; i++) {
    if (src[i] == '\n') {
      line++;
      col = 1;
    } else {
      col++;
    }
  }
  return "template: :" + std::to_string(line) + ":" + std::to_string(col) + ": ";
}

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}
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

// ---------------------------------------------------------------- execution

// A value during execution: a reference into the data, or an owned value. `missing`
// is Go's invalid value (a map key that is not there): it prints "<no value>".
struct Val {
  const TemplateValue* ref = nullptr;
  std::shared_ptr<const TemplateValue> own;
  bool missing = false;
  const TemplateValue& get() const {
    static const TemplateValue null;
    return ref ? *ref : own ? *own : null;
  }
  static Val Of(TemplateValue v) {
    Val x;
    x.own = std::make_shared<const TemplateValue>(std::move(v));
    return x;
  }
  static Val Ref(const TemplateValue& v) {
    Val x;
    x.ref = &v;
    return x;
  }
  static Val Missing() {
    Val x;
    x.missing = true;
    return x;
  }
};

bool Truth(const Val& v) {
  if (v.missing) return false;
  const TemplateValue& t = v.get();
  switch (t.kind()) {
    case K::kNull:
      return false;
    case K::kBool:
      return t.b();
    case K::kInt:
      return t.i() != 0;
    case K::kUint:
      return t.u() != 0;
    case K::kFloat:
      return t.f() != 0;
    case K::kString:
      return !t.s().empty();
    case K::kArray:
      return !t.items().empty();
    case K::kObject:
      return t.is_struct() || !t.items().empty();
  }
  return false;
}

std::string PrintVal(const Val& v) {
  if (v.missing) return "<no value>";
  return TemplateValuePrint(v.get());
}

const char* TypeName(const TemplateValue& v) {
  switch (v.kind()) {
    case K::kNull:
      return "nil";
    case K::kBool:
      return "bool";
    case K::kInt:
      return "int";
    case K::kUint:
      return "uint";
    case K::kFloat:
      return "float64";
    case K::kString:
      return "string";
    case K::kArray:
      return "slice";
    case K::kObject:
      return v.is_struct() ? "struct" : "map";
  }
  return "?";
}

enum class Flow { kNormal, kBreak, kContinue };

class Exec {
 public:
  Exec(std::string_view src, bool header, bool lenient)
      : src_(src), header_(header), lenient_(lenient) {}
  std::string out;

  Status Run(const Node& root, const TemplateValue& data) {
    vars_.push_back({"$", Val::Ref(data)});
    Flow f;
    return Walk(root.list, Val::Ref(data), &f);
  }

 private:
  static constexpr size_t kMaxSteps = 300'000;
  static constexpr size_t kMaxOutput = 64 << 20;

  Status Err(size_t pos, const std::string& msg) const {
    // "executing at <.Foo>": the command text around pos, as Go names it.
    size_t e = pos;
    int depth = 0;
    while (e < src_.size() && !(depth == 0 && (src_[e] == '}' || src_[e] == '|'))) {
      if (src_[e] == '(') depth++;
      if (src_[e] == ')') {
        if (depth == 0) break;
        depth--;
      }
      e++;
    }
    std::string at(src_.substr(pos, e - pos));
    while (!at.empty() && (IsSpace(at.back()) || at.back() == '-')) at.pop_back();
    if (at.size() > 60) at = at.substr(0, 57) + "...";
    return Status::InvalidArgument(Where(src_, pos) + "executing at <" + at + ">: " + msg);
  }
  Status Step(size_t pos) {
    if (++steps_ > kMaxSteps) return Err(pos, "the template takes too many steps");
    if (out.size() > kMaxOutput) return Err(pos, "the output is too large");
    return Status::Ok();
  }

  Status Walk(const std::vector<Node>& list, const Val& dot, Flow* flow) {
    *flow = Flow::kNormal;
    for (const Node& n : list) {
      IMGFS_RETURN_IF_ERROR(Step(n.pos));
      switch (n.kind) {
        case NK::kText:
          out += n.text;
          break;
        case NK::kAction: {
          IMGFS_ASSIGN_OR_RETURN(Val v, Pipe(n.pipe, dot));
          if (n.pipe.decl.empty()) out += PrintVal(v);
          break;
        }
        case NK::kBreak:
          *flow = Flow::kBreak;
          return Status::Ok();
        case NK::kContinue:
          *flow = Flow::kContinue;
          return Status::Ok();
        case NK::kIf:
        case NK::kWith: {
          size_t mark = vars_.size();
          auto v = Pipe(n.pipe, dot);
          if (!v.ok()) return v.status();
          Status st;
          if (Truth(*v))
            st = Walk(n.list, n.kind == NK::kWith ? *v : dot, flow);
          else
            st = Walk(n.else_list, dot, flow);
          vars_.resize(mark);
          IMGFS_RETURN_IF_ERROR(st);
          if (*flow != Flow::kNormal) return Status::Ok();
          break;
        }
        case NK::kRange:
          IMGFS_RETURN_IF_ERROR(Range(n, dot, flow));
          if (*flow != Flow::kNormal) return Status::Ok();
          break;
        case NK::kList:
          break;
      }
    }
    return Status::Ok();
  }

  Status Range(const Node& n, const Val& dot, Flow* flow) {
    size_t mark = vars_.size();
    Pipeline p = n.pipe;
    std::vector<std::string> decl = p.decl;
    p.decl.clear();
    IMGFS_ASSIGN_OR_RETURN(Val v, Pipe(p, dot));
    const TemplateValue& t = v.get();
    std::vector<std::pair<Val, Val>> elems;  // key, element
    if (v.missing || t.kind() == K::kNull) {
      // nothing to range over
    } else if (t.kind() == K::kArray) {
      for (size_t i = 0; i < t.items().size(); i++) {
        Val e = v.own ? Val::Of(t.items()[i]) : Val::Ref(t.items()[i]);
        elems.push_back({Val::Of(TemplateValue::Int(static_cast<int64_t>(i))), e});
      }
    } else if (t.kind() == K::kObject) {
      std::vector<size_t> order(t.keys().size());
      for (size_t i = 0; i < order.size(); i++) order[i] = i;
      if (!t.is_struct())
        std::sort(order.begin(), order.end(),
                  [&](size_t a, size_t b) { return t.keys()[a] < t.keys()[b]; });
      for (size_t i : order) {
        Val e = v.own ? Val::Of(t.items()[i]) : Val::Ref(t.items()[i]);
        elems.push_back({Val::Of(TemplateValue::Str(t.keys()[i])), e});
      }
    } else if (t.kind() == K::kInt && t.i() >= 0 && t.i() <= 1'000'000) {
      for (int64_t i = 0; i < t.i(); i++)
        elems.push_back({Val::Of(TemplateValue::Int(i)), Val::Of(TemplateValue::Int(i))});
    } else {
      return Err(n.pipe.pos, std::string("range can't iterate over ") + PrintVal(v));
    }
    if (elems.empty()) {
      Status st = Walk(n.else_list, dot, flow);
      vars_.resize(mark);
      return st;
    }
    for (auto& [key, elem] : elems) {
      vars_.resize(mark);
      if (decl.size() == 1) vars_.push_back({decl[0], elem});
      if (decl.size() == 2) {
        vars_.push_back({decl[0], key});
        vars_.push_back({decl[1], elem});
      }
      IMGFS_RETURN_IF_ERROR(Step(n.pos));
      IMGFS_RETURN_IF_ERROR(Walk(n.list, elem, flow));
      if (*flow == Flow::kBreak) break;
    }
    *flow = Flow::kNormal;
    vars_.resize(mark);
    return Status::Ok();
  }

  Result<Val> Pipe(const Pipeline& p, const Val& dot) {
    Val v;
    bool have = false;
    for (const Command& c : p.cmds) {
      IMGFS_ASSIGN_OR_RETURN(v, Cmd(c, dot, have ? &v : nullptr));
      have = true;
    }
    for (const std::string& name : p.decl) {
      if (p.assign) {
        auto it =
            std::find_if(vars_.rbegin(), vars_.rend(), [&](auto& x) { return x.first == name; });
        if (it == vars_.rend()) return Err(p.pos, "undefined variable: " + name);
        it->second = v;
      } else {
        vars_.push_back({name, v});
      }
    }
    return v;
  }

  Result<Val> Field(const Val& base, const std::string& name, size_t pos) {
    if (base.missing) return Val::Missing();
    const TemplateValue& t = base.get();
    if (t.kind() == K::kNull) return Val::Missing();
    if (t.kind() != K::kObject)
      return Err(pos, "can't evaluate field " + name + " in type " + TypeName(t));
    const TemplateValue* f = t.Find(name);
    if (!f) {
      if (t.is_struct() && !lenient_)
        return Err(pos, "can't evaluate field " + name + " in type struct");
      return Val::Missing();
    }
    return base.own ? Val::Of(*f) : Val::Ref(*f);
  }

  Result<Val> Chain(Val v, const std::vector<std::string>& fields, size_t pos) {
    for (const std::string& f : fields) {
      IMGFS_ASSIGN_OR_RETURN(v, Field(v, f, pos));
    }
    return v;
  }

  Result<Val> Operand(const Arg& a, const Val& dot) {
    IMGFS_RETURN_IF_ERROR(Step(a.pos));
    switch (a.kind) {
      case ArgKind::kDot:
        return dot;
      case ArgKind::kField:
        return Chain(dot, a.fields, a.pos);
      case ArgKind::kVar: {
        auto it =
            std::find_if(vars_.rbegin(), vars_.rend(), [&](auto& x) { return x.first == a.name; });
        if (it == vars_.rend()) return Err(a.pos, "undefined variable: " + a.name);
        return Chain(it->second, a.fields, a.pos);
      }
      case ArgKind::kString:
        return Val::Of(TemplateValue::Str(a.str));
      case ArgKind::kInt:
        return Val::Of(TemplateValue::Int(a.i));
      case ArgKind::kUint:
        return Val::Of(TemplateValue::Uint(a.u));
      case ArgKind::kFloat:
        return Val::Of(TemplateValue::Float(a.f));
      case ArgKind::kBool:
        return Val::Of(TemplateValue::Bool(a.b));
      case ArgKind::kNil:
        return Val::Of(TemplateValue());
      case ArgKind::kPipe: {
        size_t mark = vars_.size();
        auto v = Pipe(*a.pipe, dot);
        vars_.resize(mark);
        if (!v.ok()) return v.status();
        return Chain(*v, a.fields, a.pos);
      }
      case ArgKind::kFunc:
        return Call(a.name, {}, a.pos);
    }
    return Err(a.pos, "bad operand");
  }

  Result<Val> Cmd(const Command& c, const Val& dot, const Val* final) {
    const Arg& first = c.args[0];
    if (first.kind != ArgKind::kFunc) {
      if (final) return Err(c.pos, "can't give argument to non-function");
      return Operand(first, dot);
    }
    std::vector<Val> args;
    for (size_t i = 1; i < c.args.size(); i++) {
      IMGFS_ASSIGN_OR_RETURN(Val v, Operand(c.args[i], dot));
      args.push_back(std::move(v));
    }
    if (final) args.push_back(*final);
    IMGFS_RETURN_IF_ERROR(Step(c.pos));
    return Call(first.name, args, c.pos);
  }

  // ------------------------------------------------------------ functions

  Result<int64_t> ToInt(const Val& v, size_t pos, const std::string& fn) {
    const TemplateValue& t = v.get();
    if (!v.missing && t.kind() == K::kInt) return t.i();
    if (!v.missing && t.kind() == K::kUint && t.u() <= INT64_MAX)
      return static_cast<int64_t>(t.u());
    return Err(pos, "error calling " + fn + ": want an integer, got " + PrintVal(v));
  }

  // -1, 0, 1 for ordered kinds; error for others.
  Result<int> Compare(const Val& a, const Val& b, size_t pos, const std::string& fn) {
    const TemplateValue &x = a.get(), &y = b.get();
    auto num = [](const TemplateValue& t) {
      return t.kind() == K::kInt || t.kind() == K::kUint || t.kind() == K::kFloat;
    };
    if (!a.missing && !b.missing && num(x) && num(y)) {
      if (x.kind() == K::kFloat || y.kind() == K::kFloat) {
        auto d = [](const TemplateValue& t) {
          return t.kind() == K::kFloat ? t.f()
                 : t.kind() == K::kInt ? static_cast<double>(t.i())
                                       : static_cast<double>(t.u());
        };
        return d(x) < d(y) ? -1 : d(x) > d(y) ? 1 : 0;
      }
      // int/uint: compare signs first.
      bool xn = x.kind() == K::kInt && x.i() < 0, yn = y.kind() == K::kInt && y.i() < 0;
      if (xn != yn) return xn ? -1 : 1;
      if (xn) return x.i() < y.i() ? -1 : x.i() > y.i() ? 1 : 0;
      uint64_t xu = x.kind() == K::kInt ? static_cast<uint64_t>(x.i()) : x.u();
      uint64_t yu = y.kind() == K::kInt ? static_cast<uint64_t>(y.i()) : y.u();
      return xu < yu ? -1 : xu > yu ? 1 : 0;
    }
    if (!a.missing && !b.missing && x.kind() == K::kString && y.kind() == K::kString)
      return x.s() < y.s() ? -1 : x.s() > y.s() ? 1 : 0;
    if (fn == "eq" || fn == "ne") {
      bool xnull = a.missing || x.kind() == K::kNull, ynull = b.missing || y.kind() == K::kNull;
      if (xnull || ynull) return xnull && ynull ? 0 : 1;
      if (x.kind() == K::kBool && y.kind() == K::kBool) return x.b() == y.b() ? 0 : 1;
    }
    return Err(pos, "error calling " + fn + ": incompatible types for comparison");
  }

  std::string Printf(const std::vector<Val>& args, size_t pos) {
    const std::string& fmt = args[0].get().s();
    std::string out;
    size_t next = 1;
    for (size_t i = 0; i < fmt.size(); i++) {
      if (fmt[i] != '%') {
        out += fmt[i];
        continue;
      }
      if (++i >= fmt.size()) {
        out += "%!(NOVERB)";
        break;
      }
      bool left = false, zero = false;
      for (; i < fmt.size() && (fmt[i] == '-' || fmt[i] == '0' || fmt[i] == '+' || fmt[i] == ' ');
           i++) {
        if (fmt[i] == '-') left = true;
        if (fmt[i] == '0') zero = true;
      }
      int width = 0, prec = -1;
      for (; i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i])); i++)
        width = std::min(width * 10 + (fmt[i] - '0'), 1000);
      if (i < fmt.size() && fmt[i] == '.') {
        prec = 0;
        for (i++; i < fmt.size() && std::isdigit(static_cast<unsigned char>(fmt[i])); i++)
          prec = std::min(prec * 10 + (fmt[i] - '0'), 1000);
      }
      if (i >= fmt.size()) {
        out += "%!(NOVERB)";
        break;
      }
      char verb = fmt[i];
      if (verb == '%') {
        out += '%';
        continue;
      }
      if (next >= args.size()) {
        out += std::string("%!") + verb + "(MISSING)";
        continue;
      }
      const Val& v = args[next++];
      const TemplateValue& t = v.get();
      std::string s;
      switch (verb) {
        case 'd':
          if (t.kind() == K::kInt || t.kind() == K::kUint)
            s = PrintVal(v);
          else
            s = std::string("%!d(") + TypeName(t) + "=" + PrintVal(v) + ")";
          break;
        case 'q':
          s = TemplateValueToJson(TemplateValue::Str(PrintVal(v)));
          break;
        case 'x':
        case 'X': {
          char buf[32];
          if (t.kind() == K::kInt || t.kind() == K::kUint) {
            std::snprintf(buf, sizeof buf, verb == 'x' ? "%llx" : "%llX",
                          static_cast<unsigned long long>(t.kind() == K::kInt ? t.i() : t.u()));
            s = buf;
          } else {
            for (unsigned char ch : PrintVal(v)) {
              std::snprintf(buf, sizeof buf, verb == 'x' ? "%02x" : "%02X", ch);
              s += buf;
            }
          }
          break;
        }
        case 'f':
        case 'g':
        case 'e': {
          double d = t.kind() == K::kFloat ? t.f()
                     : t.kind() == K::kInt ? static_cast<double>(t.i())
                                           : static_cast<double>(t.u());
          char spec[16], buf[1100];
          std::snprintf(spec, sizeof spec, "%%.%d%c", prec < 0 ? 6 : prec, verb);
          std::snprintf(buf, sizeof buf, spec, d);
          s = buf;
          prec = -1;
          break;
        }
        case 's':
        case 'v':
        case 't':
          s = PrintVal(v);
          break;
        default:
          s = std::string("%!") + verb + "(" + PrintVal(v) + ")";
      }
      if (prec >= 0 && (verb == 's' || verb == 'v') && s.size() > static_cast<size_t>(prec))
        s.resize(prec);
      if (s.size() < static_cast<size_t>(width)) {
        std::string pad(width - s.size(), zero && !left ? '0' : ' ');
        s = left ? s + pad : pad + s;
      }
      out += s;
    }
    (void)pos;
    if (next < args.size()) {
      out += "%!(EXTRA ";
      for (size_t k = next; k < args.size(); k++) {
        if (k > next) out += ", ";
        out += std::string(TypeName(args[k].get())) + "=" + PrintVal(args[k]);
      }
      out += ")";
    }
    return out;
  }

  Result<Val> Call(const std::string& fn, const std::vector<Val>& args, size_t pos) {
    auto want = [&](size_t n) -> Status {
      if (args.size() != n)
        return Err(pos, "wrong number of args for " + fn + ": want " + std::to_string(n) + " got " +
                            std::to_string(args.size()));
      return Status::Ok();
    };
    auto str = [](std::string s) { return Val::Of(TemplateValue::Str(std::move(s))); };
    static const std::set<std::string> docker_fns = {"json",  "split", "join", "title",
                                                     "lower", "upper", "pad",  "truncate"};
    if (header_ && docker_fns.count(fn)) {
      // docker's header functions: the column title, unchanged.
      if (args.empty()) return Err(pos, "wrong number of args for " + fn);
      return str(PrintVal(args[0]));
    }
    if (fn == "json") {
      IMGFS_RETURN_IF_ERROR(want(1));
      return str(args[0].missing ? "null" : TemplateValueToJson(args[0].get()));
    }
    if (fn == "upper" || fn == "lower" || fn == "title") {
      IMGFS_RETURN_IF_ERROR(want(1));
      std::string s = PrintVal(args[0]);
      bool start = true;
      for (char& ch : s) {
        unsigned char u = static_cast<unsigned char>(ch);
        if (fn == "upper") ch = static_cast<char>(std::toupper(u));
        if (fn == "lower") ch = static_cast<char>(std::tolower(u));
        if (fn == "title") {
          if (start && std::isalpha(u)) ch = static_cast<char>(std::toupper(u));
          start = !(std::isalnum(u) || ch == '_' || ch == '\'' || u >= 0x80);
        }
      }
      return str(s);
    }
    if (fn == "split") {
      IMGFS_RETURN_IF_ERROR(want(2));
      std::string s = PrintVal(args[0]), sep = PrintVal(args[1]);
      TemplateValue arr = TemplateValue::Array();
      if (sep.empty()) {
        for (size_t i = 0; i < s.size();) {  // one element per UTF-8 character
          size_t n = 1;
          while (i + n < s.size() && (static_cast<unsigned char>(s[i + n]) & 0xC0) == 0x80) n++;
          arr.Push(TemplateValue::Str(s.substr(i, n)));
          i += n;
        }
      } else {
        size_t at = 0;
        for (size_t f; (f = s.find(sep, at)) != std::string::npos; at = f + sep.size())
          arr.Push(TemplateValue::Str(s.substr(at, f - at)));
        arr.Push(TemplateValue::Str(s.substr(at)));
      }
      return Val::Of(std::move(arr));
    }
    if (fn == "join") {
      IMGFS_RETURN_IF_ERROR(want(2));
      const TemplateValue& l = args[0].get();
      if (args[0].missing || (l.kind() != K::kArray && l.kind() != K::kNull))
        return Err(pos, "error calling join: want a list, got " + PrintVal(args[0]));
      std::string sep = PrintVal(args[1]), s;
      for (size_t i = 0; i < l.items().size(); i++) {
        if (i) s += sep;
        s += TemplateValuePrint(l.items()[i]);
      }
      return str(s);
    }
    if (fn == "pad") {
      IMGFS_RETURN_IF_ERROR(want(3));
      IMGFS_ASSIGN_OR_RETURN(int64_t before, ToInt(args[1], pos, fn));
      IMGFS_ASSIGN_OR_RETURN(int64_t after, ToInt(args[2], pos, fn));
      if (before < 0 || after < 0 || before > 10000 || after > 10000)
        return Err(pos, "error calling pad: bad count");
      return str(std::string(before, ' ') + PrintVal(args[0]) + std::string(after, ' '));
    }
    if (fn == "truncate") {
      IMGFS_RETURN_IF_ERROR(want(2));
      IMGFS_ASSIGN_OR_RETURN(int64_t n, ToInt(args[1], pos, fn));
      std::string s = PrintVal(args[0]);
      if (n < 0) return Err(pos, "error calling truncate: negative length");
      if (s.size() > static_cast<uint64_t>(n)) s.resize(n);
      return str(s);
    }
    if (fn == "not") {
      IMGFS_RETURN_IF_ERROR(want(1));
      return Val::Of(TemplateValue::Bool(!Truth(args[0])));
    }
    if (fn == "and" || fn == "or") {
      if (args.empty()) return Err(pos, "wrong number of args for " + fn + ": want at least 1");
      for (const Val& v : args) {
        if (Truth(v) == (fn == "or")) return v;
      }
      return args.back();
    }
    if (fn == "len") {
      IMGFS_RETURN_IF_ERROR(want(1));
      const TemplateValue& t = args[0].get();
      if (!args[0].missing && t.kind() == K::kString)
        return Val::Of(TemplateValue::Int(static_cast<int64_t>(t.s().size())));
      if (!args[0].missing && (t.kind() == K::kArray || t.kind() == K::kObject))
        return Val::Of(TemplateValue::Int(static_cast<int64_t>(t.items().size())));
      if (!args[0].missing && t.kind() == K::kNull) return Val::Of(TemplateValue::Int(0));
      return Err(pos, std::string("error calling len: len of type ") + TypeName(t));
    }
    if (fn == "index") {
      if (args.empty()) return Err(pos, "wrong number of args for index: want at least 1");
      Val v = args[0];
      for (size_t k = 1; k < args.size(); k++) {
        const TemplateValue& t = v.get();
        const TemplateValue& key = args[k].get();
        if (!v.missing && t.kind() == K::kArray) {
          IMGFS_ASSIGN_OR_RETURN(int64_t i, ToInt(args[k], pos, fn));
          if (i < 0 || static_cast<uint64_t>(i) >= t.items().size())
            return Err(pos, "error calling index: index out of range: " + std::to_string(i));
          v = v.own ? Val::Of(t.items()[i]) : Val::Ref(t.items()[i]);
        } else if (!v.missing && t.kind() == K::kObject && !args[k].missing &&
                   key.kind() == K::kString) {
          const TemplateValue* f = t.Find(key.s());
          // A missing key gives the zero value of docker's map[string]string: "".
          v = !f ? Val::Of(TemplateValue::Str("")) : v.own ? Val::Of(*f) : Val::Ref(*f);
        } else if (v.missing || t.kind() == K::kNull) {
          v = Val::Of(TemplateValue::Str(""));
        } else {
          return Err(pos,
                     std::string("error calling index: can't index item of type ") + TypeName(t));
        }
      }
      return v;
    }
    if (fn == "slice") {
      if (args.empty() || args.size() > 3)
        return Err(pos, "wrong number of args for slice: want 1 to 3");
      const TemplateValue& t = args[0].get();
      size_t n = t.kind() == K::kString ? t.s().size() : t.items().size();
      if (args[0].missing || (t.kind() != K::kString && t.kind() != K::kArray))
        return Err(pos,
                   "error calling slice: can't slice item of type " + std::string(TypeName(t)));
      int64_t lo = 0, hi = static_cast<int64_t>(n);
      if (args.size() > 1) {
        IMGFS_ASSIGN_OR_RETURN(lo, ToInt(args[1], pos, fn));
      }
      if (args.size() > 2) {
        IMGFS_ASSIGN_OR_RETURN(hi, ToInt(args[2], pos, fn));
      }
      if (lo < 0 || hi < lo || static_cast<uint64_t>(hi) > n)
        return Err(pos, "error calling slice: index out of range");
      if (t.kind() == K::kString) return str(t.s().substr(lo, hi - lo));
      std::vector<TemplateValue> part(t.items().begin() + lo, t.items().begin() + hi);
      return Val::Of(TemplateValue::Array(std::move(part)));
    }
    if (fn == "print" || fn == "println") {
      std::string s;
      for (size_t k = 0; k < args.size(); k++) {
        bool is_str = args[k].get().kind() == K::kString && !args[k].missing;
        bool prev_str = k > 0 && args[k - 1].get().kind() == K::kString && !args[k - 1].missing;
        if (k > 0 && (fn == "println" || (!is_str && !prev_str))) s += " ";
        s += PrintVal(args[k]);
      }
      if (fn == "println") s += "\n";
      return str(s);
    }
    if (fn == "printf") {
      if (args.empty() || args[0].missing || args[0].get().kind() != K::kString)
        return Err(pos, "error calling printf: want a format string");
      return str(Printf(args, pos));
    }
    if (fn == "urlquery") {
      std::string s, o;
      for (const Val& v : args) s += PrintVal(v);
      for (unsigned char ch : s) {
        if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
          o += static_cast<char>(ch);
        } else if (ch == ' ') {
          o += '+';
        } else {
          char buf[4];
          std::snprintf(buf, sizeof buf, "%%%02X", ch);
          o += buf;
        }
      }
      return str(o);
    }
    if (fn == "eq") {
      if (args.size() < 2) return Err(pos, "wrong number of args for eq: want at least 2");
      for (size_t k = 1; k < args.size(); k++) {
        IMGFS_ASSIGN_OR_RETURN(int c, Compare(args[0], args[k], pos, fn));
        if (c == 0) return Val::Of(TemplateValue::Bool(true));
      }
      return Val::Of(TemplateValue::Bool(false));
    }
    if (fn == "ne" || fn == "lt" || fn == "le" || fn == "gt" || fn == "ge") {
      IMGFS_RETURN_IF_ERROR(want(2));
      IMGFS_ASSIGN_OR_RETURN(int c, Compare(args[0], args[1], pos, fn));
      bool r = fn == "ne"   ? c != 0
               : fn == "lt" ? c < 0
               : fn == "le" ? c <= 0
               : fn == "gt" ? c > 0
                            : c >= 0;
      return Val::Of(TemplateValue::Bool(r));
    }
    return Err(pos, "function \"" + fn + "\" not defined");
  }

  std::string_view src_;
  bool header_;
  bool lenient_;
  size_t steps_ = 0;
  std::vector<std::pair<std::string, Val>> vars_;
};

}  // namespace

Result<Template> Template::Parse(std::string_view text) {
  auto root = std::make_shared<Node>();
  root->src = std::make_shared<const std::string>(text);
  Parser p(*root->src);
  IMGFS_RETURN_IF_ERROR(p.ParseAll(root.get()));
  Template t;
  t.root_ = root;
  return t;
}

Result<std::string> Template::Execute(const TemplateValue& data, bool header_mode,
                                      bool lenient_fields) const {
  if (!root_) return std::string();
  Exec e(*root_->src, header_mode, lenient_fields);
  IMGFS_RETURN_IF_ERROR(e.Run(*root_, data));
  return std::move(e.out);
}

// ---------------------------------------------------------------- docker's layer

Result<DockerFormat> DockerFormat::Parse(std::string_view format, std::string_view default_table) {
  DockerFormat f;
  std::string body(format);
  if (body == "json") {
    body = "{{json .}}";
  } else if (body.rfind("table", 0) == 0) {
    f.table_ = true;
    body = body.substr(5);
    if (body.find_first_not_of(' ') == std::string::npos) body = std::string(default_table);
  }
  // docker: trim spaces, then "\t" and "\n" typed as two characters are a tab, a newline.
  size_t b = body.find_first_not_of(' '), e = body.find_last_not_of(' ');
  body = b == std::string::npos ? "" : body.substr(b, e - b + 1);
  std::string out;
  for (size_t i = 0; i < body.size(); i++) {
    if (body[i] == '\\' && i + 1 < body.size() && (body[i + 1] == 't' || body[i + 1] == 'n')) {
      out += body[i + 1] == 't' ? '\t' : '\n';
      i++;
    } else {
      out += body[i];
    }
  }
  IMGFS_ASSIGN_OR_RETURN(f.tmpl_, Template::Parse(out));
  return f;
}

Result<std::string> DockerFormat::Render(const std::vector<TemplateValue>& rows,
                                         const TemplateValue& header) const {
  std::string out;
  if (table_) {
    IMGFS_ASSIGN_OR_RETURN(std::string h, tmpl_.Execute(header, true));
    out += h + "\n";
  }
  for (const TemplateValue& r : rows) {
    IMGFS_ASSIGN_OR_RETURN(std::string s, tmpl_.Execute(r));
    out += s + "\n";
  }
  return table_ ? TabAlign(out) : out;
}

// Go's text/tabwriter: a column block is a run of consecutive lines that have a cell in
// that column; its width is the widest cell plus padding, at least minwidth.
std::string TabAlign(std::string_view text, size_t minwidth, size_t padding) {
  std::vector<std::vector<std::string>> lines;
  // Each column is one level of recursion: a line of thousands of cells is not a table.
  if (std::count(text.begin(), text.end(), '\t') > 100000) return std::string(text);
  size_t at = 0;
  while (at <= text.size()) {
    size_t nl = text.find('\n', at);
    std::string_view line =
        text.substr(at, nl == std::string_view::npos ? std::string_view::npos : nl - at);
    std::vector<std::string> cells;
    size_t c = 0;
    for (size_t t; (t = line.find('\t', c)) != std::string_view::npos; c = t + 1)
      cells.emplace_back(line.substr(c, t - c));
    cells.emplace_back(line.substr(c));
    lines.push_back(std::move(cells));
    if (nl == std::string_view::npos) break;
    at = nl + 1;
  }
  auto width = [](const std::string& s) {
    size_t n = 0;
    for (unsigned char ch : s) n += (ch & 0xC0) != 0x80;
    return n;
  };
  std::vector<size_t> widths;
  std::string out;
  auto write = [&](size_t from, size_t to) {
    for (size_t l = from; l < to; l++) {
      const auto& cells = lines[l];
      for (size_t j = 0; j < cells.size(); j++) {
        out += cells[j];
        if (j < widths.size() && j + 1 < cells.size()) {
          size_t w = width(cells[j]);
          if (w < widths[j]) out += std::string(widths[j] - w, ' ');
        }
      }
      if (l + 1 < lines.size()) out += '\n';
    }
  };
  std::function<void(size_t, size_t)> format = [&](size_t line0, size_t line1) {
    size_t column = widths.size();
    for (size_t l = line0; l < line1; l++) {
      if (column + 1 >= lines[l].size()) continue;
      write(line0, l);
      line0 = l;
      size_t w = minwidth;
      for (; l < line1; l++) {
        if (column + 1 >= lines[l].size()) break;
        w = std::max(w, width(lines[l][column]) + padding);
      }
      widths.push_back(w);
      format(line0, l);
      widths.pop_back();
      line0 = l;
      if (l >= line1) break;
    }
    write(line0, line1);
  };
  size_t most = 0;
  for (const auto& l : lines) most = std::max(most, l.size());
  if (most > 256) return std::string(text);
  format(0, lines.size());
  return out;
}

}  // namespace imgfs
