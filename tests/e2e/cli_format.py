#!/usr/bin/env python3
"""Helpers for cli_format.sh: builds docker-archives from a config the test writes, and
derives what docker would print for a field from that config alone (no imgfs code).

  cli_format.py build OUT.tar NAME:TAG|- CREATED LABELS_JSON   (prints the config path)
  cli_format.py expect CONFIG WHAT [ARGS]                      (prints docker's output)
"""
import datetime, hashlib, io, json, sys, tarfile, time


def human_size(n, prec=3):
    # docker's units.HumanSizeWithPrecision: decimal units, %.{prec}g.
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    n = float(n)
    while n >= 1000 and i < 5:
        n /= 1000
        i += 1
    return ("%." + str(prec) + "g%s") % (n, units[i])


def human_since(t):
    # docker's units.HumanDuration(now - t) + " ago".
    s = int(time.time()) - t
    h = s // 3600
    if s < 1: return "Less than a second ago"
    if s < 60: return "%d seconds ago" % s
    if s // 60 == 1: return "About a minute ago"
    if s < 3600: return "%d minutes ago" % (s // 60)
    if h == 1: return "About an hour ago"
    if h < 48: return "%d hours ago" % h
    if h < 24 * 7 * 2: return "%d days ago" % (h // 24)
    if h < 24 * 30 * 2: return "%d weeks ago" % (h // 24 // 7)
    if h < 24 * 365 * 2: return "%d months ago" % (h // 24 // 30)
    return "%d years ago" % (h // 24 // 365)


def ellipsis(s, width):  # docker's formatter.Ellipsis (ASCII)
    return s if len(s) <= width else s[:width - 1] + "\u2026"


def tabwrite(rows):
    # Go's tabwriter(minwidth 10, padding 3) for rows that all have the same cells.
    widths = [max(10, max(len(r[i]) for r in rows) + 3) for i in range(len(rows[0]) - 1)]
    return "".join("".join(c.ljust(widths[i]) for i, c in enumerate(r[:-1])) + r[-1] + "\n"
                   for r in rows)


def layer_tar(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 1600000000
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(out, ref, created, labels):
    created = int(created)
    seed = (ref + str(created)).encode()
    layers = [layer_tar([("etc/one", b"1" * 3000 + seed)]),
              layer_tar([("etc/two", b"2" * 70000 + seed), ("etc/three", b"3")])]
    diff_ids = ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]
    cfg = {
        "architecture": "amd64", "os": "linux", "created": rfc3339(created),
        "config": {"Env": ["PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8", "X=<a&b>"],
                   "Cmd": ["/bin/sh"], "Labels": labels, "WorkingDir": "/srv"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": rfc3339(created - 300), "created_by": "/bin/sh -c #(nop) ADD file:0123456789abcdef0123456789abcdef in / "},
            {"created": rfc3339(created - 200), "created_by": "/bin/sh -c #(nop)  ENV LANG=C.UTF-8", "empty_layer": True},
            {"created": rfc3339(created - 100), "created_by": "RUN\t/bin/sh -c echo two > /etc/two # buildkit", "comment": "buildkit.dockerfile.v0"},
            {"created": rfc3339(created), "created_by": "/bin/sh -c #(nop)  CMD [\"/bin/sh\"]", "empty_layer": True},
        ],
    }
    cfg_bytes = json.dumps(cfg).encode()
    cfg_name = hashlib.sha256(cfg_bytes).hexdigest() + ".json"
    manifest = [{"Config": cfg_name, "RepoTags": None if ref == "-" else [ref],
                 "Layers": ["l%d/layer.tar" % i for i in range(len(layers))]}]
    with tarfile.open(out, "w") as t:
        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        add(cfg_name, cfg_bytes)
        for i, l in enumerate(layers):
            add("l%d/layer.tar" % i, l)
        add("manifest.json", json.dumps(manifest).encode())
    with open(out + ".config.json", "wb") as f:
        f.write(cfg_bytes)
    with open(out + ".sizes", "w") as f:
        f.write(" ".join(str(len(l)) for l in layers))
    print(out + ".config.json")


def expect(cfg_path, what, *args):
    raw = open(cfg_path, "rb").read()
    cfg = json.loads(raw)
    image_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    sizes = [int(x) for x in open(cfg_path[:-len(".config.json")] + ".sizes").read().split()]
    created = int(datetime.datetime.strptime(cfg["created"], "%Y-%m-%dT%H:%M:%SZ")
                  .replace(tzinfo=datetime.timezone.utc).timestamp())
    c = cfg["config"]
    out = {
        "id": lambda: image_id,
        "short": lambda: image_id[7:19],
        "env_json": lambda: json.dumps(c["Env"], separators=(",", ":"), ensure_ascii=False),
        "env_join": lambda: ",".join(c["Env"]),
        "env_go": lambda: "[" + " ".join(c["Env"]) + "]",
        "labels_json": lambda: json.dumps(c["Labels"], separators=(",", ":"), sort_keys=True,
                                          ensure_ascii=False),
        "label": lambda: c["Labels"].get(args[0], ""),
        "layers_lines": lambda: "".join(d + "\n" for d in cfg["rootfs"]["diff_ids"]),
        "platform": lambda: cfg["os"] + "/" + cfg["architecture"],
        "size": lambda: human_size(sum(sizes)),
        # the image's blobs on disk: uncompressed layer tars and the config
        "blob_bytes": lambda: human_size(sum(sizes) + len(raw)),
        "created_at": lambda: datetime.datetime.fromtimestamp(created, datetime.timezone.utc)
                      .strftime("%Y-%m-%d %H:%M:%S +0000 UTC"),
        "created_since": lambda: human_since(created),
    }
    if what in out:
        print(out[what]())
        return
    if what.startswith("history"):
        # moby's ImageHistory + docker's history formatter.
        rows, li = [], 0
        for h in cfg["history"]:
            size = 0
            if not h.get("empty_layer"):
                size = sizes[li]
                li += 1
            t = int(datetime.datetime.strptime(h["created"], "%Y-%m-%dT%H:%M:%SZ")
                    .replace(tzinfo=datetime.timezone.utc).timestamp())
            rows.insert(0, ["<missing>", t, h["created_by"].replace("\t", " "), size,
                            h.get("comment", "")])
        rows[0][0] = image_id
        if what == "history_table":
            table = [["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]]
            for r in rows:
                table.append([r[0][7:19] if r[0].startswith("sha256:") else r[0],
                              human_since(r[1]), ellipsis(r[2], 45), human_size(r[3]), r[4]])
            sys.stdout.write(tabwrite(table))
        elif what == "history_json":  # --no-trunc --format json
            for r in rows:
                print(json.dumps({"Comment": r[4], "CreatedAt": rfc3339(r[1]), "CreatedBy": r[2],
                                  "CreatedSince": human_since(r[1]), "ID": r[0],
                                  "Size": human_size(r[3])}, separators=(",", ":"),
                                 ensure_ascii=False))
        elif what == "history_q":
            for r in rows:
                print(r[0][7:19] if r[0].startswith("sha256:") else r[0])
        return
    sys.exit("unknown expectation " + what)


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build(sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5]))
    else:
        expect(*sys.argv[2:])
