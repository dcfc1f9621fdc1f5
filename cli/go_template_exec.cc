// The template executor (cli/go_template_internal.h): walks the tree over a value
// with Go's semantics for fields, variables, pipelines, control and functions, within
// a step and output budget.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <set>

#include "cli/go_template_internal.h"

namespace imgfs {
namespace gotmpl {

using K = TemplateValue::Kind;
using Node = TemplateNode;
using NK = TemplateNode::Kind;

namespace {

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

Result<std::string> ExecuteTemplate(const TemplateNode& root, std::string_view src,
                                    const TemplateValue& data, bool header, bool lenient) {
  Exec e(src, header, lenient);
  IMGFS_RETURN_IF_ERROR(e.Run(root, data));
  return std::move(e.out);
}

}  // namespace gotmpl
}  // namespace imgfs
