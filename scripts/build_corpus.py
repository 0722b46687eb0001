#!/usr/bin/env python3
"""scripts/build_corpus.py — the large text corpus of the quality test, from installed Debian
packages (scripts/build_corpus.sh installs them and runs this; it is not part of CI).

    python3 scripts/build_corpus.py OUT [--val-percent 2] [--max-file-bytes 1048576]
                                        [--limit-files N] [--code PKG] [--prose PKG ...]
                                        [--code-tarball PATH]

Sources:
  code   the Linux kernel sources of linux-source-6.1 (/usr/src/linux-source-6.1.tar.xz, read
         as a stream: every regular file in the tarball; --code-tarball names another tarball
         of the --code package, which tests/programs/build_corpus.sh uses);
  prose  the files of Debian documentation packages (dpkg -L): reStructuredText, text, POD,
         Markdown, man pages and HTML (tags, scripts and styles removed), gzip-compressed or not.
A file becomes one document if it is valid UTF-8 without NUL bytes (so: text, and NUL can end
each document in the output), at most --max-file-bytes long (the largest files are generated
tables: register maps, firmware dumps), and not empty. Line ends are normalised to LF.

Deduplication: a document whose content (trailing spaces of each line removed) has the
SHA-256 of one already kept is dropped; documents are visited in the order of their names
"PACKAGE/PATH", sorted, so the first name wins, whatever the order of the sources.

Split BY FILE: a document goes to validation when the first 8 bytes of the SHA-256 of its name,
as an integer mod 10000, are below --val-percent · 100: deterministic, independent of every
other file, and no file (nor any duplicate of its content) is in both splits.

Writes, each through a temporary file renamed at the end:
  OUT/train.docs, OUT/val.docs   the documents, each followed by one NUL byte
                                 (examples/prepare_data --corpus OUT reads them)
  OUT/files.tsv.gz               one row per source file: split (train, val, or why it was
                                 dropped: duplicate, binary, too_large, empty), bytes,
                                 SHA-256 of the content, name
  OUT/manifest.json              the packages: version, architecture, installed size (KiB),
                                 and the size and SHA-256 of the .deb as the archive lists it
                                 (apt-cache; absent when apt has no record of it), the code
                                 tarball's bytes and SHA-256; per package and split the
                                 documents and bytes, what was dropped and why, and the bytes
                                 and SHA-256 of every output file
"""
import argparse
import gzip
import hashlib
import html.parser
import io
import json
import os
import subprocess
import sys
import tarfile

PROSE_EXT = (".rst", ".txt", ".pod", ".md", ".html", ".htm", ".tex", ".texi", ".adoc")
KERNEL_TARBALL = "/usr/src/linux-source-6.1.tar.xz"


class _Text(html.parser.HTMLParser):
    """The text of an HTML page, without scripts and styles, one line per block."""

    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "dt", "dd",
             "table", "section", "blockquote"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def html_text(text):
    p = _Text()
    p.feed(text)
    lines = [line.rstrip() for line in "".join(p.parts).split("\n")]
    out, blank = [], 0
    for line in lines:  # at most one blank line in a row
        blank = blank + 1 if not line else 0
        if blank <= 1:
            out.append(line)
    return "\n".join(out).strip() + "\n"


def package_info(pkg):
    """What the manifest records of an installed package (see the top)."""
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}\t${Version}\t${Architecture}\t"
                        "${Installed-Size}", pkg], capture_output=True, text=True)
    fields = r.stdout.split("\t")
    if r.returncode != 0 or len(fields) != 4 or not fields[0].endswith(" installed"):
        sys.exit(f"build_corpus.py: package '{pkg}' is not installed, expected an installed "
                 f"package (scripts/build_corpus.sh installs them)")
    info = {"version": fields[1], "architecture": fields[2],
            "installed_size_kib": int(fields[3] or 0)}
    r = subprocess.run(["apt-cache", "show", "--no-all-versions", f"{pkg}={fields[1]}"],
                       capture_output=True, text=True)
    for line in r.stdout.split("\n") if r.returncode == 0 else []:
        key, _, value = line.partition(": ")
        if key == "Size" and "deb_bytes" not in info:
            info["deb_bytes"] = int(value)
        elif key == "SHA256" and "deb_sha256" not in info:
            info["deb_sha256"] = value.strip()
    return info


def prose_files(pkg, limit):
    """(name, bytes) of the text files of an installed package."""
    r = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, check=True)
    n = 0
    for path in sorted(r.stdout.split("\n")):
        if not path or not os.path.isfile(path) or os.path.islink(path):
            continue
        base = path[:-3] if path.endswith(".gz") else path
        is_man = "/man/" in path and not base.endswith(".html")
        if not (base.endswith(PROSE_EXT) or is_man):
            continue
        with open(path, "rb") as f:
            data = f.read()
        if path.endswith(".gz"):
            try:
                data = gzip.decompress(data)
            except OSError:
                continue
        yield f"{pkg}{base}", data
        n += 1
        if limit and n >= limit:
            return


def code_files(pkg, tarball, limit):
    """(name, bytes) of every regular file in the code tarball, streamed."""
    n = 0
    with tarfile.open(tarball, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            f = tar.extractfile(member)
            yield f"{pkg}/" + member.name.split("/", 1)[-1], f.read()
            n += 1
            if limit and n >= limit:
                return


def as_text(name, data, max_bytes):
    """(text, None) for a document, or (None, why it is dropped)."""
    if not data.strip():
        return None, "empty"
    if len(data) > max_bytes:
        return None, "too_large"
    if b"\0" in data:
        return None, "binary"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "binary"
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if name.endswith((".html", ".htm")):
        text = html_text(text)
        if not text.strip():
            return None, "empty"
    return text, None


class AtomicFile:
    """A file written under NAME.tmp and renamed to NAME when closed without error."""

    def __init__(self, path, mode="wb"):
        self.path, self.tmp = path, path + ".tmp"
        self.f = open(self.tmp, mode)

    def __enter__(self):
        return self.f

    def __exit__(self, kind, value, tb):
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        if kind is None:
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--val-percent", type=float, default=2.0)
    ap.add_argument("--max-file-bytes", type=int, default=1 << 20)
    ap.add_argument("--limit-files", type=int, default=0,
                    help="at most this many files per package (a quick trial; 0: all)")
    ap.add_argument("--code", default="linux-source-6.1")
    ap.add_argument("--code-tarball", default=KERNEL_TARBALL)
    ap.add_argument("--prose", nargs="*", default=[])
    a = ap.parse_args(argv[1:])
    if not 0 < a.val_percent < 50:
        sys.exit(f"build_corpus.py: --val-percent {a.val_percent}, expected a value in (0, 50)")
    if a.max_file_bytes < 1:
        sys.exit(f"build_corpus.py: --max-file-bytes {a.max_file_bytes}, expected a positive size")
    if a.limit_files < 0:
        sys.exit(f"build_corpus.py: --limit-files {a.limit_files}, expected a count >= 0 (0: all)")
    if a.code and not os.path.isfile(a.code_tarball):
        sys.exit(f"build_corpus.py: --code-tarball '{a.code_tarball}' is not a file, expected the "
                 f"source tarball of {a.code} (Debian's linux-source-6.1 installs "
                 f"{KERNEL_TARBALL})")
    os.makedirs(a.out, exist_ok=True)

    packages = {}
    docs = {}  # name -> (package, text)
    rows = []  # (split or reason, bytes, sha256, name)
    dropped = {}

    def take(pkg, name, data):
        text, why = as_text(name, data, a.max_file_bytes)
        if why:
            rows.append((why, len(data), hashlib.sha256(data).hexdigest(), name))
            dropped.setdefault(pkg, {}).setdefault(why, 0)
            dropped[pkg][why] += 1
        else:
            docs[name] = (pkg, text)

    if a.code:
        packages[a.code] = package_info(a.code)
        packages[a.code]["tarball"] = {"path": a.code_tarball,
                                       "bytes": os.path.getsize(a.code_tarball),
                                       "sha256": sha256_file(a.code_tarball)}
        for name, data in code_files(a.code, a.code_tarball, a.limit_files):
            take(a.code, name, data)
        print(f"build_corpus.py: {a.code}: {sum(1 for p, _ in docs.values() if p == a.code)} "
              f"text files", flush=True)
    for pkg in a.prose:
        packages[pkg] = package_info(pkg)
        before = len(docs)
        for name, data in prose_files(pkg, a.limit_files):
            take(pkg, name, data)
        print(f"build_corpus.py: {pkg}: {len(docs) - before} text files", flush=True)

    threshold = int(round(a.val_percent * 100))
    seen = set()
    stats = {}
    train_path, val_path = os.path.join(a.out, "train.docs"), os.path.join(a.out, "val.docs")
    with AtomicFile(train_path) as train, AtomicFile(val_path) as val:
        for name in sorted(docs):
            pkg, text = docs[name]
            data = text.encode("utf-8")
            digest = hashlib.sha256(data).hexdigest()
            key = hashlib.sha256(
                "\n".join(line.rstrip() for line in text.split("\n")).encode("utf-8")).digest()
            if key in seen:
                rows.append(("duplicate", len(data), digest, name))
                dropped.setdefault(pkg, {}).setdefault("duplicate", 0)
                dropped[pkg]["duplicate"] += 1
                continue
            seen.add(key)
            bucket = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")
            split = "val" if bucket % 10000 < threshold else "train"
            (val if split == "val" else train).write(data + b"\0")
            s = stats.setdefault(pkg, {}).setdefault(split, {"documents": 0, "bytes": 0})
            s["documents"] += 1
            s["bytes"] += len(data)
            rows.append((split, len(data), digest, name))
    rows.sort(key=lambda r: r[3])
    files_path = os.path.join(a.out, "files.tsv.gz")
    with AtomicFile(files_path) as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write(b"split\tbytes\tsha256\tname\n")
            for r in rows:
                gz.write(f"{r[0]}\t{r[1]}\t{r[2]}\t{r[3]}\n".encode("utf-8"))
    total = {split: {"documents": sum(s.get(split, {}).get("documents", 0) for s in stats.values()),
                     "bytes": sum(s.get(split, {}).get("bytes", 0) for s in stats.values())}
             for split in ("train", "val")}
    manifest = {
        "script": "scripts/build_corpus.sh (scripts/build_corpus.py)",
        "settings": {"val_percent": a.val_percent, "max_file_bytes": a.max_file_bytes,
                     "limit_files": a.limit_files, "split": "sha256(name)[:8] mod 10000",
                     "dedup": "sha256 of the content with trailing spaces removed per line"},
        "packages": packages,
        "documents": stats,
        "dropped": dropped,
        "total": total,
        "outputs": {os.path.basename(p): {"bytes": os.path.getsize(p), "sha256": sha256_file(p)}
                    for p in (train_path, val_path, files_path)},
    }
    with AtomicFile(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    mb = total["train"]["bytes"] / 1e6
    print(f"build_corpus.py: {total['train']['documents']} train documents ({mb:.1f} MB), "
          f"{total['val']['documents']} val ({total['val']['bytes'] / 1e6:.1f} MB); "
          f"wrote {a.out}/{{train.docs, val.docs, files.tsv.gz, manifest.json}}")
    if not a.limit_files and mb < 1000:
        print(f"build_corpus.py: note: {mb:.0f} MB of training text, less than the 1 GB aimed "
              f"for (see manifest.json 'dropped')")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
