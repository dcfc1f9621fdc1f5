// Go text/template subset (cli/go_template.h): a hand-written parser to a small tree,
// and a tree walker with a step and output budget.
#include "cli/go_template.h"

#include "cli/go_template_internal.h"

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

// `f` in the shortest form std::to_chars picks (or in exponent form), the exponent as
// Go writes it.
std::string FormatFloat(double f, bool exponent = false) {
  if (std::isnan(f)) return "NaN";
  if (std::isinf(f)) return f > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto r = exponent ? std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific)
                    : std::to_chars(buf, buf + sizeof buf, f);
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
      if (!std::isfinite(v.f())) {
        w.Null();
      } else {
        // A whole number past 64 bits ("2666666666666666491904", which to_chars picks
        // when it is no longer than the exponent form) is valid JSON that simdjson, and so
        // TemplateValueFromJson, refuses: the exponent form there.
        std::string n = FormatFloat(v.f());
        if (n.find_first_of(".e") == std::string::npos && std::fabs(v.f()) >= 1e19)
          n = FormatFloat(v.f(), true);
        w.Raw(n);
      }
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

// ---------------------------------------------------------------- shared by the parts

namespace gotmpl {

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

}  // namespace gotmpl

Result<Template> Template::Parse(std::string_view text) {
  auto root = std::make_shared<TemplateNode>();
  root->src = std::make_shared<const std::string>(text);
  IMGFS_RETURN_IF_ERROR(gotmpl::ParseTemplate(*root->src, root.get()));
  Template t;
  t.root_ = root;
  return t;
}

Result<std::string> Template::Execute(const TemplateValue& data, bool header_mode,
                                      bool lenient_fields) const {
  if (!root_) return std::string();
  return gotmpl::ExecuteTemplate(*root_, *root_->src, data, header_mode, lenient_fields);
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
    if (body.find_first_not_of(' ') == std::string::npos) {
      body = std::string(default_table);
      f.default_table_ = true;
    }
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

namespace {
// A cell's width: its UTF-8 characters (continuation bytes are not counted).
size_t Utf8Width(std::string_view s) {
  size_t n = 0;
  for (unsigned char ch : s) n += (ch & 0xC0) != 0x80;
  return n;
}
}  // namespace

// Go's text/tabwriter: a column block is a run of consecutive lines that have a cell in
// that column; its width is the widest cell plus padding, at least minwidth.
std::string TabAlign(std::string_view text, size_t minwidth, size_t padding) {
  std::vector<std::vector<std::string>> lines;
  // Each column is one level of recursion: a line of thousands of cells is not a table
  // (checked before splitting; a table of many lines is one, however many tabs in all).
  for (size_t at = 0, tabs = 0; at < text.size(); at++) {
    if (text[at] == '\n') tabs = 0;
    if (text[at] == '\t' && ++tabs > 256) return std::string(text);
  }
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
  std::vector<size_t> widths;
  std::string out;
  auto write = [&](size_t from, size_t to) {
    for (size_t l = from; l < to; l++) {
      const auto& cells = lines[l];
      for (size_t j = 0; j < cells.size(); j++) {
        out += cells[j];
        if (j < widths.size() && j + 1 < cells.size()) {
          size_t w = Utf8Width(cells[j]);
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
        w = std::max(w, Utf8Width(lines[l][column]) + padding);
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

TableWriter::TableWriter(size_t columns, size_t minwidth, size_t padding)
    : columns_(std::max<size_t>(columns, 1)),
      minwidth_(minwidth),
      padding_(padding),
      col_width_(columns_, 0) {}

void TableWriter::Cell(std::string_view s) {
  if (s.find_first_of("\t\n") != std::string_view::npos) plain_ = false;
  size_t w = Utf8Width(s);
  size_t& col = col_width_[ends_.size() % columns_];
  col = std::max(col, w);
  buf_.append(s);
  ends_.push_back(buf_.size());
  width_.push_back(w);
}

std::string TableWriter::Joined() const {
  std::string out;
  for (size_t i = 0, from = 0; i < ends_.size(); from = ends_[i++]) {
    out.append(buf_, from, ends_[i] - from);
    out += (i + 1) % columns_ == 0 ? '\n' : '\t';
  }
  return out;
}

// Every line has the same cells, so the whole table is one column block for each
// column but the last (TabAlign's recursion never splits it): column j is as wide as
// its widest cell plus padding, at least minwidth; the last cell is not padded.
std::string TableWriter::Take() {
  std::string out;
  if (!plain_ || ends_.size() % columns_ != 0 || columns_ > 256) {
    out = TabAlign(Joined(), minwidth_, padding_);
  } else {
    std::vector<size_t> pad_to(columns_);
    size_t line = 0;
    for (size_t j = 0; j + 1 < columns_; j++) {
      pad_to[j] = std::max(minwidth_, col_width_[j] + padding_);
      line += pad_to[j];
    }
    out.reserve(buf_.size() + (ends_.size() / columns_) * (line + 1));
    for (size_t i = 0, from = 0; i < ends_.size(); from = ends_[i++]) {
      out.append(buf_, from, ends_[i] - from);
      size_t j = i % columns_;
      if (j + 1 == columns_) {
        out += '\n';
      } else if (width_[i] < pad_to[j]) {
        out.append(pad_to[j] - width_[i], ' ');
      }
    }
  }
  *this = TableWriter(columns_, minwidth_, padding_);
  return out;
}

}  // namespace imgfs
