// imgfs subcommands. Images: load, import, images, inspect, tag, rmi.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <simdjson.h>

#include "cli/cli_common.h"
#include "cli/image_filter.h"
#include "cli/ls_format.h"
#include "fs/fuse_adapter.h"
#include "fs/image_view.h"
#include "fs/unpack_cache.h"
#include "index/lazy_layer.h"
#include "index/seek_index.h"
#include "index/store.h"
#include "registry/credentials.h"
#include "registry/daemon_config.h"
#include "registry/image_loader.h"
#include "registry/json.h"
#include "registry/puller.h"
#include "registry/reference.h"

namespace imgfs {
namespace {

int CmdLoad(const std::string& root, const Args& a) {
  if (a.pos.size() > 1 || (a.pos.size() == 1 && a.Has("--input")))
    Die("load: want exactly one FILE or DIR (see imgfs load --help)", 2);
  // Like docker load: no FILE reads the archive from stdin ("-" says so explicitly).
  std::string path = a.Has("--input") ? a.Get("--input") : a.pos.empty() ? "-" : a.pos[0];
  if (path == "-" && ::isatty(STDIN_FILENO))
    Die("load: stdin is a terminal: give a FILE, or redirect an archive (imgfs load < FILE)", 2);
  auto store = OpenStore(root);
  LoadOptions opt;
  opt.repository = a.Get("--name");
  if (!opt.repository.empty()) {
    auto r = ParseReference(opt.repository);
    if (!r.ok() || !r->tag.empty() || !r->digest.empty())
      Die("load: --name wants a repository without tag");
  }
  bool quiet = a.Has("--quiet");
  // Progress goes to stdout like docker's, and only to a terminal: stderr stays for
  // the one error line, and scripts see only the "Loaded image" lines.
  if (!quiet && ::isatty(STDOUT_FILENO)) {
    opt.progress = [](const std::string& l) {
      std::printf("%s\n", l.c_str());
      std::fflush(stdout);
    };
  }
  auto out = LoadImages(*store, path, opt);
  if (!out.ok()) return Fail(out.status(), "load");
  for (const LoadedImage& img : *out) {
    if (img.names.empty()) {
      std::printf("Loaded image ID: %s\n", img.id.str().c_str());
      if (!quiet && !opt.repository.empty()) continue;
    }
    for (const std::string& n : img.names) {
      auto r = ParseReference(n);
      std::printf("Loaded image: %s\n", r.ok() ? r->FamiliarString().c_str() : n.c_str());
    }
  }
  return 0;
}

int CmdImport(const std::string& root, const Args& a) {
  if (a.pos.size() != 2) Die("import: want TARBALL REFERENCE (see imgfs import --help)", 2);
  auto ref = ParseDockerRef(a.pos[1]);
  if (!ref.ok()) return Fail(ref.status(), "import");
  if (!ref->digest.empty()) Die("import: the reference must be a tag, not a digest");
  auto store = OpenStore(root);
  auto out = ImportRootfs(*store, a.pos[0], *ref, LoadOptions{});
  if (!out.ok()) return Fail(out.status(), "import");
  std::printf("%s\n", out->id.str().c_str());
  return 0;
}

int CmdImages(const std::string& root, const Args& a) {
  auto store = OpenStore(root);
  // A row needs no diff_ids, unless the store holds lazily pulled layers: then each
  // image's layers are looked at for the partial/broken note below.
  bool any_lazy = LazyDir::AnyIn(store->root());
  auto images = store->ListImageSummaries(/*layers=*/any_lazy);
  if (!images.ok()) return Fail(images.status(), "images");
  auto names = NamesByImage(*store);
  if (!names.ok()) return Fail(names.status(), "images");
  std::sort(images->begin(), images->end(), [](const ImageSummary& x, const ImageSummary& y) {
    return x.created_unix != y.created_unix ? x.created_unix > y.created_unix : x.id < y.id;
  });
  std::string filter_repo, filter_tag;
  if (!a.pos.empty()) {
    auto r = ParseReference(a.pos[0]);
    if (!r.ok()) return Fail(r.status(), "images");
    filter_repo = r->Name();
    filter_tag = r->tag;
  }
  bool digests = a.Has("--digests"), no_trunc = a.Has("--no-trunc"), quiet = a.Has("--quiet");
  std::string table = "{{.Repository}}\t{{.Tag}}\t";
  if (digests) table += "{{.Digest}}\t";
  table += "{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
  DockerFormat format = ParseFormatOrDie("images", a.Get("--format", "table"), table);
  struct Row {
    std::string repo, tag, digest;
    const ImageSummary* img;
  };
  // An image's rows are next to each other, in the images' order.
  std::vector<Row> rows;
  rows.reserve(images->size());
  for (const ImageSummary& img : *images) {
    auto named = names->find(img.id.hex());
    if (named == names->end()) {
      if (filter_repo.empty()) rows.push_back({"<none>", "<none>", "", &img});
      continue;
    }
    const Names& n = named->second;
    std::set<std::string> repos_with_tag;
    for (const Reference& t : n.tags) {
      std::string dg;
      for (const Reference& d : n.digests) {
        if (d.Name() == t.Name()) dg = d.digest;
      }
      rows.push_back({t.FamiliarName(), t.tag, dg, &img});
      if (!n.digests.empty()) repos_with_tag.insert(t.Name());
    }
    for (const Reference& d : n.digests) {
      if (!repos_with_tag.count(d.Name()))
        rows.push_back({d.FamiliarName(), "<none>", d.digest, &img});
    }
    if (n.tags.empty() && n.digests.empty() && filter_repo.empty())
      rows.push_back({"<none>", "<none>", "", &img});
  }
  if (!filter_repo.empty()) {
    std::erase_if(rows, [&](const Row& r) {
      auto ref = ParseReference(r.repo);
      return !ref.ok() || ref->Name() != filter_repo ||
             (!filter_tag.empty() && r.tag != filter_tag);
    });
  }
  ImageFilter filter;
  if (Status st = filter.Parse(*store, a.Multi("--filter")); !st.ok())
    Die("images: " + st.message(), 2);
  if (!filter.empty()) {
    std::erase_if(rows, [&](const Row& r) {
      return !filter.Match(*store, r.img->id, r.img->created_unix, r.repo, r.tag,
                           r.repo == "<none>");
    });
  }
  auto id_of = [&](const ImageSummary& img) { return no_trunc ? img.id.str() : img.id.Short(); };
  if (quiet) {
    const ImageSummary* last = nullptr;
    for (const Row& r : rows) {
      if (r.img != last) std::printf("%s\n", id_of(*r.img).c_str());
      last = r.img;
    }
    return 0;
  }
  // A lazily pulled image (registry/lazy_pull.h): its SIZE says how much of its
  // compressed layers is local; one completed with a mismatch says it is broken, and
  // why on stderr. (No lazy/ directory: no image has a note.)
  std::map<std::string, std::string> size_notes;
  for (const Row& r : rows) {
    if (!any_lazy) break;
    if (size_notes.count(r.img->id.hex())) continue;
    uint64_t local = 0, total = 0;
    bool partial = false;
    std::string broken;
    for (const Digest& d : r.img->diff_ids) {
      auto layer = store->GetLayer(d);
      if (!layer.ok() || !*layer) continue;
      const LayerRecord& l = **layer;
      total += l.blob_size;
      LazyDir dir = LazyDir::For(store->root(), l.blob);
      if (!dir.Exists()) {
        local += l.blob_size;
        continue;
      }
      if (std::string why = dir.BrokenReason(); !why.empty() && broken.empty()) broken = why;
      if (store->blobs().Has(l.blob)) {
        local += l.blob_size;
      } else {
        partial = true;
        auto ranges = dir.LoadRanges(l.blob_size);
        if (ranges.ok()) local += ranges->Total();
      }
    }
    std::string note;
    if (!broken.empty()) {
      note = " (broken)";
      std::fprintf(stderr, "imgfs: images: %s is broken: %s\n", r.img->id.Short().c_str(),
                   broken.c_str());
    } else if (partial) {
      note = " (partial: " + HumanSize(static_cast<double>(local)) + " of " +
             HumanSize(static_cast<double>(total)) + " local)";
    }
    size_notes[r.img->id.hex()] = note;
  }
  auto size_note = [&](const ImageSummary& img) -> std::string_view {
    if (size_notes.empty()) return {};
    auto it = size_notes.find(img.id.hex());
    return it == size_notes.end() ? std::string_view() : it->second;
  };
  if (format.is_default_table()) {
    // The default table, printed directly: the same cells as the template path below
    // gives for the default table body (tests/e2e/images_table.sh compares the two), in
    // the columns TableWriter aligns exactly as that path's TabAlign. No template values,
    // no template run, no split of the rendered text: `imgfs images` of 10,000 images.
    TableWriter t(digests ? 6 : 5);
    for (const char* title : {"REPOSITORY", "TAG"}) t.Cell(title);
    if (digests) t.Cell("DIGEST");
    for (const char* title : {"IMAGE ID", "CREATED", "SIZE"}) t.Cell(title);
    // Neighbouring rows are mostly the same image or the same age: each cell once.
    const ImageSummary* last = nullptr;
    std::string id, since, size;
    int64_t since_of = 0;
    bool have_since = false;
    for (const Row& r : rows) {
      t.Cell(r.repo);
      t.Cell(r.tag);
      if (digests) t.Cell(r.digest.empty() ? "<none>" : r.digest);
      if (r.img != last) {
        last = r.img;
        id = id_of(*r.img);
        if (!r.img->has_created) {
          since = "N/A";
          have_since = false;
        } else if (!have_since || r.img->created_unix != since_of) {
          since = HumanSince(r.img->created_unix);
          since_of = r.img->created_unix;
          have_since = true;
        }
        size = HumanSize(static_cast<double>(r.img->size));
        size += size_note(*r.img);
      }
      t.Cell(id);
      t.Cell(since);
      t.Cell(size);
    }
    std::string out = t.Take();
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  }
  // docker's image context (cli/command/formatter/image.go): these fields, keys sorted.
  std::vector<TemplateValue> values;
  for (const Row& r : rows) {
    TemplateValue v = TemplateValue::Object(true);
    v.Set("Containers", TemplateValue::Str("N/A"));
    v.Set("CreatedAt", TemplateValue::Str(GoTimeString(r.img->created_unix)));
    v.Set("CreatedSince",
          TemplateValue::Str(r.img->has_created ? HumanSince(r.img->created_unix) : "N/A"));
    v.Set("Digest", TemplateValue::Str(r.digest.empty() ? "<none>" : r.digest));
    v.Set("ID", TemplateValue::Str(id_of(*r.img)));
    v.Set("Repository", TemplateValue::Str(r.repo));
    v.Set("SharedSize", TemplateValue::Str("N/A"));
    v.Set("Size", TemplateValue::Str(HumanSize(static_cast<double>(r.img->size)) +
                                     std::string(size_note(*r.img))));
    v.Set("Tag", TemplateValue::Str(r.tag));
    v.Set("UniqueSize", TemplateValue::Str("N/A"));
    v.Set("VirtualSize", TemplateValue::Str(HumanSize(static_cast<double>(r.img->size), 4)));
    values.push_back(std::move(v));
  }
  return PrintFormatted("images", format, values,
                        HeaderOf({{"Containers", "CONTAINERS"},
                                  {"CreatedAt", "CREATED AT"},
                                  {"CreatedSince", "CREATED"},
                                  {"Digest", "DIGEST"},
                                  {"ID", "IMAGE ID"},
                                  {"Repository", "REPOSITORY"},
                                  {"SharedSize", "SHARED SIZE"},
                                  {"Size", "SIZE"},
                                  {"Tag", "TAG"},
                                  {"UniqueSize", "UNIQUE SIZE"},
                                  {"VirtualSize", "SIZE"}}));
}

// inspect's JSON as a template value: docker's structs (the image, Config, RootFS,
// Metadata, each layer) keep their field order in {{json}}; maps (Labels...) are sorted.
Result<TemplateValue> InspectValue(const std::string& json) {
  IMGFS_ASSIGN_OR_RETURN(TemplateValue v, TemplateValueFromJson(json));
  v.set_struct(true);
  for (const char* k : {"Config", "RootFS", "Metadata"}) {
    if (TemplateValue* f = v.FindMutable(k); f && f->kind() == TemplateValue::Kind::kObject)
      f->set_struct(true);
  }
  return v;
}

// Indents compact JSON (strings are copied verbatim).
std::string PrettyJson(const std::string& in) {
  std::string out;
  int depth = 0;
  bool in_str = false;
  auto nl = [&] { out += "\n" + std::string(depth * 4, ' '); };
  for (size_t i = 0; i < in.size(); i++) {
    char c = in[i];
    if (in_str) {
      out += c;
      if (c == '\\')
        out += in[++i];
      else if (c == '"')
        in_str = false;
      continue;
    }
    switch (c) {
      case '"':
        in_str = true;
        out += c;
        break;
      case '{':
      case '[':
        if (i + 1 < in.size() && (in[i + 1] == '}' || in[i + 1] == ']')) {
          out += c;
          out += in[++i];
          break;
        }
        out += c;
        depth++;
        nl();
        break;
      case '}':
      case ']':
        depth--;
        nl();
        out += c;
        break;
      case ',':
        out += c;
        nl();
        break;
      case ':':
        out += ": ";
        break;
      default:
        out += c;
    }
  }
  return out;
}

int CmdInspect(const std::string& root, const Args& a) {
  if (a.pos.empty()) Die("inspect: want at least one IMAGE", 2);
  // docker inspect: no --format or "json" is the indented array; else a template run
  // over each image's JSON (unknown fields print <no value>, as docker's raw fallback).
  std::string format = a.Get("--format");
  std::optional<Template> tmpl;
  if (!format.empty() && format != "json") {
    auto t = Template::Parse(format);
    if (!t.ok()) Die("inspect: --format: " + t.status().message(), 2);
    tmpl = std::move(*t);
  }
  auto store = OpenStore(root);
  auto names = NamesByImage(*store);
  if (!names.ok()) return Fail(names.status(), "inspect");
  JsonWriter all;  // the array; w is one image's object
  all.BeginArray();
  std::string templated;
  for (const std::string& s : a.pos) {
    JsonWriter w;
    auto id = ResolveImage(*store, s);
    if (!id.ok()) return Fail(id.status(), "inspect");
    auto view = ImageView::Open(*store, *id);
    if (!view.ok()) return Fail(view.status(), "inspect " + s);
    const ImageRecord& img = (*view)->image();
    auto cfg_bytes = store->blobs().Read(img.id);
    if (!cfg_bytes.ok()) return Fail(cfg_bytes.status(), "inspect " + s);
    auto cfg = ParseConfig(*cfg_bytes);
    if (!cfg.ok()) return Fail(cfg.status(), "inspect " + s);
    const Names& n = (*names)[img.id.hex()];
    w.BeginObject();
    w.Key("Id").String(img.id.str());
    w.Key("RepoTags").BeginArray();
    for (const Reference& t : n.tags) w.String(t.FamiliarString());
    w.EndArray();
    w.Key("RepoDigests").BeginArray();
    for (const Reference& d : n.digests) w.String(d.FamiliarString());
    w.EndArray();
    w.Key("Created").String(img.created);
    w.Key("Os").String(img.os);
    w.Key("Architecture").String(img.architecture);
    if (!img.variant.empty()) w.Key("Variant").String(img.variant);
    w.Key("Size").Uint(img.size);
    w.Key("Config").Raw(cfg->config_json);
    w.Key("RootFS").BeginObject().Key("Type").String("layers").Key("Layers").BeginArray();
    for (const Digest& d : img.diff_ids) w.String(d.str());
    w.EndArray().EndObject();
    w.Key("Manifest").String(img.manifest_digest);
    w.Key("Layers").BeginArray();
    for (const LayerRecord& l : (*view)->layers()) {
      w.BeginObject();
      w.Key("Digest").String(l.blob.str()).Key("DiffID").String(l.diff_id.str());
      w.Key("MediaType").String(l.media_type).Key("Size").Uint(l.blob_size);
      w.Key("UncompressedSize").Uint(l.size).Key("Entries").Uint(l.entry_count);
      w.EndObject();
    }
    w.EndArray();
    w.Key("Metadata")
        .BeginObject()
        .Key("AddedAt")
        .String(FormatRfc3339(img.added_unix))
        .EndObject();
    w.EndObject();
    all.Raw(w.str());
    if (tmpl) {
      auto v = InspectValue(w.str());
      if (!v.ok()) return Fail(v.status(), "inspect " + s);
      auto out = tmpl->Execute(*v, false, true);
      if (!out.ok()) return Fail(out.status(), "inspect: --format");
      templated += *out + "\n";
    }
  }
  all.EndArray();
  if (tmpl) {
    std::fwrite(templated.data(), 1, templated.size(), stdout);
    return 0;
  }
  std::printf("%s\n", PrettyJson(all.str()).c_str());
  return 0;
}

int CmdTag(const std::string& root, const Args& a) {
  if (a.pos.size() != 2) Die("tag: want SOURCE_IMAGE TARGET_IMAGE[:TAG]", 2);
  auto dst = ParseDockerRef(a.pos[1]);
  if (!dst.ok()) return Fail(dst.status(), "tag");
  if (!dst->digest.empty()) Die("tag: refusing to create a tag with a digest reference");
  auto store = OpenStore(root);
  auto id = ResolveImage(*store, a.pos[0]);
  if (!id.ok()) return Fail(id.status(), "tag");
  Status st = store->SetRef(dst->String(), RefRecord{id->hex(), ""});
  if (!st.ok()) return Fail(st, "tag");
  return 0;
}

// Deletes the blobs an image removal freed, and the unpacked copies of its layers
// (named by diff_id) that no image has any more.
Status DeleteBlobs(Store& store, const std::vector<Digest>& freed,
                   const std::vector<Digest>& diff_ids) {
  IMGFS_ASSIGN_OR_RETURN(auto live, store.LiveBlobs());
  for (const Digest& d : freed) {
    if (live.count(d)) continue;
    IMGFS_RETURN_IF_ERROR(store.blobs().Delete(d));
  }
  for (const Digest& d : diff_ids) {
    IMGFS_ASSIGN_OR_RETURN(auto layer, store.GetLayer(d));
    if (!layer) ::unlink(store.UnpackedPath(d).c_str());  // a running mount keeps its fd
  }
  // Seek indexes of layers the index no longer has (index/seek_index.h).
  IMGFS_RETURN_IF_ERROR(PruneSeekIndexes(store).status());
  return store.NoteBlobsDeleted();  // a running mount lets its pins of them go
}

int CmdRmi(const std::string& root, const Args& a) {
  if (a.pos.empty()) Die("rmi: want at least one IMAGE", 2);
  auto store = OpenStore(root);
  auto lock = GcLock::Acquire(*store, true);
  if (!lock.ok()) return Fail(lock.status(), "rmi");
  bool force = a.Has("--force");
  int rc = 0;
  for (const std::string& s : a.pos) {
    auto id = ResolveImage(*store, s);
    if (!id.ok()) {
      rc = Fail(id.status(), "rmi");
      continue;
    }
    auto names = NamesByImage(*store);
    if (!names.ok()) return Fail(names.status(), "rmi");
    const Names& n = (*names)[id->hex()];
    std::string hex = s.rfind("sha256:", 0) == 0 ? s.substr(7) : s;
    auto as_ref = ParseDockerRef(s);
    bool by_name = false;
    if (as_ref.ok()) {
      auto rec = store->GetRef(as_ref->String());
      by_name = rec.ok() && rec->has_value();
    }
    if (by_name) {
      // docker's rule (moby ImageDelete): remove the name; when it was a tag and no other
      // tag of that repository is left, the repository's digest references go with it.
      // Only when no name at all is left is the image deleted.
      std::vector<Reference> also;  // digest references removed with the tag
      bool other_tag_in_repo = false;
      for (auto& t : n.tags) {
        if (t.String() != as_ref->String() && t.Name() == as_ref->Name()) other_tag_in_repo = true;
      }
      if (as_ref->digest.empty() && !other_tag_in_repo) {
        for (auto& d : n.digests) {
          if (d.Name() == as_ref->Name()) also.push_back(d);
        }
      }
      size_t left = n.tags.size() + n.digests.size() - 1 - also.size();
      if (left > 0) {
        Status st = store->DeleteRef(as_ref->String());
        for (auto& d : also) {
          if (st.ok()) st = store->DeleteRef(d.String());
        }
        if (!st.ok()) return Fail(st, "rmi");
        std::printf("Untagged: %s\n", as_ref->FamiliarString().c_str());
        for (auto& d : also) std::printf("Untagged: %s\n", d.FamiliarString().c_str());
        continue;
      }
    }
    if (!by_name) {
      std::set<std::string> repos;
      for (auto& t : n.tags) repos.insert(t.Name());
      for (auto& d : n.digests) repos.insert(d.Name());
      if (repos.size() > 1 && !force) {
        rc = Fail(Status::InvalidArgument(
                      "conflict: unable to delete " + id->Short() +
                      " (must be forced) - image is referenced in multiple repositories"),
                  "rmi");
        continue;
      }
    }
    for (auto& t : n.tags) std::printf("Untagged: %s\n", t.FamiliarString().c_str());
    for (auto& d : n.digests) std::printf("Untagged: %s\n", d.FamiliarString().c_str());
    auto img = store->GetImage(*id);
    if (!img.ok()) return Fail(img.status(), "rmi");
    std::vector<Digest> diff_ids = *img ? (*img)->diff_ids : std::vector<Digest>{};
    auto freed = store->DeleteImage(*id);
    if (!freed.ok()) return Fail(freed.status(), "rmi");
    Status st = DeleteBlobs(*store, *freed, diff_ids);
    if (!st.ok()) return Fail(st, "rmi");
    std::printf("Deleted: %s\n", id->str().c_str());
  }
  return rc;
}

}  // namespace

std::vector<Command> ImageCommands() {
  return {
      {"load",
       "imgfs load [--name REPO] [-q] [-i FILE|DIR|-] [FILE|DIR|-]",
       "Load images from a docker-archive or OCI archive (tar, .tar.gz, .tar.zst) or an OCI layout "
       "directory.\n"
       "With no FILE, or FILE -, the archive is read from stdin (a pipe is spooled into the\n"
       "store's ingest/ directory, checked as it arrives).\n"
       "  -i, --input FILE   read from FILE (same as the argument)\n"
       "  --name REPO        repository for OCI entries whose ref name is only a tag\n"
       "  -q, --quiet        no progress lines",
       {"--input", "--name"},
       {{"-i", "--input"}, {"-q", "--quiet"}},
       CmdLoad},
      {"import",
       "imgfs import TARBALL|- REPOSITORY[:TAG]",
       "Create a one-layer image from a rootfs tarball (plain, gzip or zstd). Prints the image "
       "ID.\n"
       "TARBALL - reads the tarball from stdin (streamed, never held in memory).",
       {},
       {},
       CmdImport},
      {"images",
       "imgfs images [-a] [--digests] [--no-trunc] [-q] [-f FILTER]... [--format FORMAT] "
       "[REPOSITORY[:TAG]]",
       "List local images, as docker images does.\n"
       "  -a, --all            all images (the default: imgfs has no intermediate images)\n"
       "  --digests            show digests\n"
       "  --no-trunc           full image IDs\n"
       "  -q, --quiet          only image IDs\n"
       "  -f, --filter FILTER  dangling=true|false, reference=GLOB, before=IMAGE,\n"
       "                       since=IMAGE, label=KEY[=VALUE] (repeatable; all must hold)\n"
       "  --format FORMAT      \"table\" (default), \"table TEMPLATE\", \"json\" (one object a\n"
       "                       line) or a Go template: {{.Repository}} {{.Tag}} {{.ID}}\n"
       "                       {{.Digest}} {{.CreatedSince}} {{.CreatedAt}} {{.Size}}",
       {"--format", "--filter"},
       {{"-q", "--quiet"}, {"-a", "--all"}, {"-f", "--filter"}},
       CmdImages,
       {"--all", "--digests", "--no-trunc", "--quiet"}},
      {"inspect",
       "imgfs inspect [-f FORMAT] IMAGE...",
       "Print details of images as a JSON array.\n"
       "  -f, --format FORMAT  \"json\" (default) or a Go template run over each image,\n"
       "                       e.g. '{{.Id}}', '{{json .Config.Env}}', '{{.RootFS.Layers}}'",
       {"--format"},
       {{"-f", "--format"}},
       CmdInspect,
       {}},
      {"tag",
       "imgfs tag SOURCE_IMAGE TARGET_IMAGE[:TAG]",
       "Create a name TARGET_IMAGE that refers to SOURCE_IMAGE.",
       {},
       {},
       CmdTag},
      {"rmi",
       "imgfs rmi [-f] IMAGE...",
       "Remove names; an image whose last name goes is removed with the layers and blobs only it "
       "used.\n"
       "  -f, --force        remove an image named in several repositories",
       {},
       {{"-f", "--force"}},
       CmdRmi,
       {"--force"}},
  };
}

}  // namespace imgfs
