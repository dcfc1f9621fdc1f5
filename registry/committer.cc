#include "registry/committer.h"

#include <simdjson.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <utility>

#include "index/json_writer.h"
#include "index/layer_writer.h"
#include "registry/config_fields.h"
#include "registry/image_loader.h"
#include "registry/json.h"

namespace imgfs {
namespace {

std::string Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

// Words as a Dockerfile line splits them: whitespace separates, "…" and '…' quote
// (a backslash escapes inside double quotes and outside quotes).
Result<std::vector<std::string>> SplitWords(std::string_view s) {
  std::vector<std::string> out;
  std::string cur;
  bool in_word = false;
  for (size_t i = 0; i < s.size(); i++) {
    char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (in_word) out.push_back(std::move(cur));
      cur.clear();
      in_word = false;
      continue;
    }
    in_word = true;
    if (c == '\\' && i + 1 < s.size()) {
      cur.push_back(s[++i]);
    } else if (c == '"' || c == '\'') {
      size_t j = i + 1;
      for (; j < s.size() && s[j] != c; j++) {
        if (c == '"' && s[j] == '\\' && j + 1 < s.size()) j++;
        cur.push_back(s[j]);
      }
      if (j >= s.size()) return Status::InvalidArgument("unterminated quote in: " + std::string(s));
      i = j;
    } else {
      cur.push_back(c);
    }
  }
  if (in_word) out.push_back(std::move(cur));
  return out;
}

// A JSON array of strings, when `s` is one.
std::optional<std::vector<std::string>> JsonStrings(std::string_view s) {
  std::string t = Trim(s);
  if (t.empty() || t.front() != '[') return std::nullopt;
  simdjson::dom::parser parser;
  simdjson::dom::array arr;
  if (parser.parse(t).get(arr) != simdjson::SUCCESS) return std::nullopt;
  std::vector<std::string> out;
  for (auto el : arr) {
    std::string_view v;
    if (el.get(v) != simdjson::SUCCESS) return std::nullopt;
    out.emplace_back(v);
  }
  return out;
}

std::string StringArray(const std::vector<std::string>& v) {
  JsonWriter w;
  w.BeginArray();
  for (const auto& s : v) w.String(s);
  w.EndArray();
  return w.str();
}

// key=value pairs (ENV, LABEL); ENV also takes the old `ENV key value…` form.
Result<std::vector<std::pair<std::string, std::string>>> NameValues(const std::string& instr,
                                                                    const std::string& args,
                                                                    bool allow_old_form) {
  std::vector<std::pair<std::string, std::string>> out;
  IMGFS_ASSIGN_OR_RETURN(auto words, SplitWords(args));
  if (words.empty()) return Status::InvalidArgument(instr + " needs at least one argument");
  if (allow_old_form && words[0].find('=') == std::string::npos) {
    std::string rest = Trim(args);
    size_t sp = rest.find_first_of(" \t");
    if (sp == std::string::npos) return Status::InvalidArgument(instr + " " + rest + ": no value");
    out.emplace_back(rest.substr(0, sp), Trim(rest.substr(sp)));
    return out;
  }
  for (const auto& w : words) {
    size_t eq = w.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Status::InvalidArgument(instr + ": want KEY=VALUE, got " + w);
    }
    out.emplace_back(w.substr(0, eq), w.substr(eq + 1));
  }
  return out;
}

// Reads a JSON object of string values (Labels) or of empty objects (ExposedPorts,
// Volumes): the keys and raw values, in order.
Result<Fields> ExistingMap(Fields& cfg, const std::string& key) {
  std::string* v = FindField(cfg, key);
  if (!v) return Fields{};
  return ObjectFields(*v, "config." + key);
}

Result<std::vector<std::string>> ExistingStrings(Fields& cfg, const std::string& key) {
  std::string* v = FindField(cfg, key);
  if (!v || *v == "null") return std::vector<std::string>{};
  auto s = JsonStrings(*v);
  if (!s) return Status::InvalidArgument("config." + key + ": not an array of strings");
  return *s;
}

}  // namespace

Result<std::string> ApplyChanges(std::string_view config_object,
                                 const std::vector<std::string>& changes) {
  IMGFS_ASSIGN_OR_RETURN(Fields cfg, ObjectFields(config_object, "config"));
  bool cmd_set = false, entrypoint_set = false;
  for (const std::string& change : changes) {
    std::string line = Trim(change);
    size_t sp = line.find_first_of(" \t");
    std::string instr = line.substr(0, sp);
    std::string args = sp == std::string::npos ? "" : Trim(line.substr(sp));
    std::transform(instr.begin(), instr.end(), instr.begin(),
                   [](unsigned char c) { return std::toupper(c); });
    auto what = [&](const std::string& m) {
      return Status::InvalidArgument("--change '" + change + "': " + m);
    };
    if (instr.empty()) return what("empty instruction");
    if (instr == "CMD" || instr == "ENTRYPOINT") {
      std::vector<std::string> argv;
      if (auto j = JsonStrings(args)) {
        argv = *j;
      } else {
        if (args.empty()) return what(instr + " needs a command");
        argv = {"/bin/sh", "-c", args};
      }
      SetField(cfg, instr == "CMD" ? "Cmd" : "Entrypoint", StringArray(argv));
      (instr == "CMD" ? cmd_set : entrypoint_set) = true;
    } else if (instr == "ENV") {
      auto kv = NameValues(instr, args, true);
      if (!kv.ok()) return what(kv.status().message());
      IMGFS_ASSIGN_OR_RETURN(auto env, ExistingStrings(cfg, "Env"));
      for (const auto& [k, v] : *kv) {
        auto it = std::find_if(env.begin(), env.end(), [&, &k = k](const std::string& e) {
          return e.compare(0, k.size() + 1, k + "=") == 0 || e == k;
        });
        if (it != env.end()) {
          *it = k + "=" + v;
        } else {
          env.push_back(k + "=" + v);
        }
      }
      SetField(cfg, "Env", StringArray(env));
    } else if (instr == "LABEL") {
      auto kv = NameValues(instr, args, false);
      if (!kv.ok()) return what(kv.status().message());
      IMGFS_ASSIGN_OR_RETURN(Fields labels, ExistingMap(cfg, "Labels"));
      for (const auto& [k, v] : *kv) SetField(labels, k, JsonString(v));
      SetField(cfg, "Labels", MapJson(labels));
    } else if (instr == "EXPOSE" || instr == "VOLUME") {
      std::vector<std::string> items;
      if (auto j = (instr == "VOLUME" ? JsonStrings(args) : std::nullopt)) {
        items = *j;
      } else {
        auto w = SplitWords(args);
        if (!w.ok()) return what(w.status().message());
        items = *w;
      }
      if (items.empty()) return what(instr + " needs an argument");
      std::string key = instr == "EXPOSE" ? "ExposedPorts" : "Volumes";
      IMGFS_ASSIGN_OR_RETURN(Fields m, ExistingMap(cfg, key));
      for (std::string item : items) {
        if (instr == "EXPOSE") {
          // PORT[-END][/PROTO], as docker's nat.ParsePortSpecs: a range is every port in it.
          if (item.find('/') == std::string::npos) item += "/tcp";
          std::string port = item.substr(0, item.find('/'));
          std::string proto = item.substr(item.find('/'));
          size_t dash = port.find('-');
          std::string lo = port.substr(0, dash);
          std::string hi = dash == std::string::npos ? lo : port.substr(dash + 1);
          auto number = [](const std::string& p) {
            return !p.empty() && p.size() <= 5 && std::all_of(p.begin(), p.end(), ::isdigit) &&
                   std::stoi(p) <= 65535;
          };
          if (!number(lo) || !number(hi) || std::stoi(hi) < std::stoi(lo) ||
              (proto != "/tcp" && proto != "/udp" && proto != "/sctp")) {
            return what("invalid port " + item);
          }
          for (int p = std::stoi(lo); p <= std::stoi(hi); p++) {
            SetField(m, std::to_string(p) + proto, "{}");
          }
          continue;
        }
        if (item.empty()) return what("empty volume path");
        SetField(m, item, "{}");
      }
      SetField(cfg, key, MapJson(m));
    } else if (instr == "USER") {
      if (args.empty()) return what("USER needs a user");
      SetField(cfg, "User", JsonString(args));
    } else if (instr == "WORKDIR") {
      if (args.empty()) return what("WORKDIR needs a path");
      std::string dir = args;
      if (dir.front() != '/') {
        std::string cur = "/";
        if (std::string* v = FindField(cfg, "WorkingDir")) {
          simdjson::dom::parser p;
          std::string_view s;
          if (p.parse(*v).get(s) == simdjson::SUCCESS && !s.empty()) cur = std::string(s);
        }
        dir = (cur.back() == '/' ? cur : cur + "/") + dir;
      }
      SetField(cfg, "WorkingDir", JsonString(dir));
    } else {
      return what("unsupported instruction " + instr +
                  " (commit takes CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, VOLUME)");
    }
  }
  // As in a Dockerfile: a new ENTRYPOINT drops the inherited CMD.
  if (entrypoint_set && !cmd_set) SetField(cfg, "Cmd", "null");
  return MapJson(cfg);
}

Result<std::string> ChildConfig(std::string_view parent, const Digest& diff_id,
                                const std::vector<std::string>& changes, const std::string& message,
                                int64_t now) {
  IMGFS_ASSIGN_OR_RETURN(Fields top, ObjectFields(parent, "base config"));
  if (parent.empty()) {
    Platform host = HostPlatform();
    top.emplace_back("architecture", JsonString(host.architecture));
    top.emplace_back("os", JsonString(host.os));
    if (!host.variant.empty()) top.emplace_back("variant", JsonString(host.variant));
  }
  std::string* cfg = FindField(top, "config");
  IMGFS_ASSIGN_OR_RETURN(std::string new_cfg, ApplyChanges(cfg ? *cfg : "", changes));
  std::vector<std::string> diff_ids;
  if (std::string* rootfs = FindField(top, "rootfs")) {
    IMGFS_ASSIGN_OR_RETURN(Fields r, ObjectFields(*rootfs, "base config rootfs"));
    IMGFS_ASSIGN_OR_RETURN(diff_ids, ExistingStrings(r, "diff_ids"));
  }
  diff_ids.push_back(diff_id.str());
  JsonWriter rootfs;
  rootfs.BeginObject().Key("type").String("layers").Key("diff_ids").Raw(StringArray(diff_ids));
  rootfs.EndObject();

  std::string created_by = "imgfs commit";
  for (const auto& c : changes) created_by += " --change '" + c + "'";
  JsonWriter hist;
  hist.BeginArray();
  if (std::string* h = FindField(top, "history")) {
    simdjson::dom::parser p;
    simdjson::dom::array arr;
    if (p.parse(*h).get(arr) == simdjson::SUCCESS) {
      for (auto el : arr) hist.Raw(simdjson::minify(el));
    }
  }
  hist.BeginObject().Key("created").String(FormatRfc3339(now)).Key("created_by").String(created_by);
  if (!message.empty()) hist.Key("comment").String(message);
  hist.EndObject().EndArray();

  std::erase_if(top, [](const auto& f) {
    return f.first == "container" || f.first == "container_config" || f.first == "id" ||
           f.first == "parent";
  });
  SetField(top, "created", JsonString(FormatRfc3339(now)));
  SetField(top, "config", new_cfg);
  SetField(top, "rootfs", rootfs.str());
  SetField(top, "history", hist.str());
  return MapJson(top);
}

Result<LoadedImage> CommitDirectory(Store& store, const CommitRequest& req) {
  struct stat st;
  if (::stat(req.dir.c_str(), &st) != 0) return Status::FromErrno(req.dir);
  if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument(req.dir + ": not a directory");
  IMGFS_ASSIGN_OR_RETURN(GcLock lock, GcLock::Acquire(store, false));
  std::string parent;
  if (req.base) {
    IMGFS_ASSIGN_OR_RETURN(auto rec, store.GetImage(*req.base));
    if (!rec) return Status::NotFound("base image " + req.base->str() + " is not in the store");
    auto bytes = store.blobs().Read(*req.base);
    if (!bytes.ok()) return bytes.status().WithContext("base image config");
    parent = std::move(*bytes);
  }
  // Changes are checked before the layer is written: a typo costs nothing.
  IMGFS_RETURN_IF_ERROR(ApplyChanges("", req.changes).status());
  ImageStage stage(store, req.progress);
  LayerWriteOptions opts;
  opts.overlay = req.base.has_value();
  Status writer_error;
  Result<Digest> diff_id = Status::Unavailable("not written");
  {
    auto src = GzipLayerSource(req.dir, opts, &writer_error);
    diff_id = stage.AddLayer(src.get(), std::nullopt, nullptr, Compression::kGzip);
  }  // joins the writer
  // The writer's own error names the file; the pipeline's would only say the stream broke.
  if (!writer_error.ok()) return writer_error.WithContext(req.dir);
  if (!diff_id.ok()) return diff_id.status().WithContext(req.dir);
  IMGFS_ASSIGN_OR_RETURN(std::string config,
                         ChildConfig(parent, *diff_id, req.changes, req.message, ::time(nullptr)));
  IMGFS_ASSIGN_OR_RETURN(ImageRecord rec, RecordFromConfig(config, Sha256Of(config)));
  StagedImage img;
  img.record = std::move(rec);
  img.config = std::move(config);
  img.names.push_back(req.name);
  IMGFS_RETURN_IF_ERROR(stage.AddImage(std::move(img)));
  IMGFS_ASSIGN_OR_RETURN(auto out, stage.Commit());
  return out.at(0);
}

}  // namespace imgfs
