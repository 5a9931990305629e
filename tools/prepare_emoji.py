#!/usr/bin/env python3
"""Build the 32x32 training atlas used by ddim-webgpu.

Two modes:

  Emoji (default)
      Fetches the npm package ``emoji-datasource-google@16.0.0`` with
      ``npm pack`` into a scratch directory under /tmp, checks the SHA-256 of the
      tarball, and reads the 64x64 Noto emoji PNGs straight out of the .tgz.
      Categories "Flags" and "Component" are skipped; skin-tone variants are
      included (3,511 images for 16.0.0).

  Folder (``--folder DIR``)
      Any folder of PNG/JPEG images (searched recursively, sorted by relative
      path). Each image is composited onto white, centre-cropped to a square
      of its shorter side and area-resampled to ``--size`` x ``--size``.

Image processing (both modes)
  * RGBA/LA/palette images are composited over an opaque white background.
  * Downsampling is an area (box) average in sRGB space, i.e. directly on the
    8-bit sRGB-encoded values, rounded half up. For the emoji 64->32 this is an
    exact 2x2 mean.

Output (written atomically)
  <out>.png  : one RGB 8-bit PNG atlas, tiles of ``tile`` x ``tile`` pixels,
               ``columns`` tiles per row, row-major in item order. Unused cells
               of the last row are white.
  <out>.json : {"tile", "columns", "count", "source", "sha256", "items": [...]}
               where items[i] = {"unified", "category", "name"} describes tile i.
               "sha256" is the SHA-256 of the source tarball (emoji mode) or of a
               manifest of (relative path, file SHA-256) lines (folder mode).

No augmentation is applied here. In particular the training script does not
flip horizontally: emoji contain text ("OK", "NG", "SOS", "ATM") and
directional glyphs (arrows), and mirroring would teach the model mirrored text.

Usage
  python tools/prepare_emoji.py                        # -> data/emoji32.{png,json}
  python tools/prepare_emoji.py --tgz path/to/emoji-datasource-google-16.0.0.tgz
  python tools/prepare_emoji.py --folder ~/pics --size 32 --out data/mypics32
"""

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import numpy as np
from PIL import Image, ImageOps

PACKAGE = "emoji-datasource-google"
VERSION = "16.0.0"
TGZ_NAME = f"{PACKAGE}-{VERSION}.tgz"
TGZ_SHA256 = "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438"
SKIP_CATEGORIES = {"Flags", "Component"}
COLUMNS = 64
IMAGE_EXTS = {".png", ".jpg", ".jpeg"}

SKIN_TONE_NAMES = {
    "1F3FB": "light skin tone",
    "1F3FC": "medium-light skin tone",
    "1F3FD": "medium skin tone",
    "1F3FE": "medium-dark skin tone",
    "1F3FF": "dark skin tone",
}

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def die(msg):
    print(f"prepare_emoji: error: {msg}", file=sys.stderr)
    sys.exit(1)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------
# image helpers
# ----------------------------------------------------------------------------

def to_rgb_on_white(im):
    """Return a float64 HxWx3 array (0..255, sRGB) of `im` composited on white."""
    im = ImageOps.exif_transpose(im) if hasattr(im, "getexif") else im
    if im.mode not in ("RGBA", "RGB"):
        # palette / LA / L / CMYK / 16-bit: let Pillow expand (keeps transparency)
        has_alpha = im.mode in ("LA", "PA") or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
    a = np.asarray(im, dtype=np.float64)
    if a.shape[2] == 4:
        alpha = a[:, :, 3:4] / 255.0
        a = a[:, :, :3] * alpha + 255.0 * (1.0 - alpha)
    return a


def box_downsample(a, size):
    """Area-average a HxWx3 float array to size x size. Exact when H, W are
    integer multiples of size; otherwise falls back to Pillow's BOX filter
    (which is also an area average) on float data."""
    h, w, _ = a.shape
    if h % size == 0 and w % size == 0:
        fy, fx = h // size, w // size
        return a.reshape(size, fy, size, fx, 3).mean(axis=(1, 3))
    chans = []
    for c in range(3):
        ch = Image.fromarray(a[:, :, c].astype(np.float32), mode="F")
        chans.append(np.asarray(ch.resize((size, size), Image.BOX), dtype=np.float64))
    return np.stack(chans, axis=2)


def quantize(a):
    return np.clip(np.floor(a + 0.5), 0, 255).astype(np.uint8)


def centre_square(a):
    h, w, _ = a.shape
    s = min(h, w)
    y0 = (h - s) // 2
    x0 = (w - s) // 2
    return a[y0:y0 + s, x0:x0 + s]


# ----------------------------------------------------------------------------
# atlas output
# ----------------------------------------------------------------------------

def write_atlas(tiles, meta, out_prefix, tile, columns):
    n = len(tiles)
    if n == 0:
        die("no images to write")
    rows = (n + columns - 1) // columns
    atlas = np.full((rows * tile, columns * tile, 3), 255, dtype=np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        atlas[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = t
    png_path = out_prefix + ".png"
    json_path = out_prefix + ".json"
    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)

    buf = io.BytesIO()
    Image.fromarray(atlas, mode="RGB").save(buf, format="PNG", optimize=True)
    tmp = png_path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(buf.getvalue())
    os.replace(tmp, png_path)

    doc = {
        "tile": tile,
        "columns": columns,
        "count": n,
        "source": meta["source"],
        "sha256": meta["sha256"],
        "items": meta["items"],
    }
    tmp = json_path + ".tmp"
    with open(tmp, "w") as f:
        # one item per line: readable diffs, still valid JSON
        f.write("{\n")
        for k in ("tile", "columns", "count", "source", "sha256"):
            f.write(f"  {json.dumps(k)}: {json.dumps(doc[k])},\n")
        f.write('  "items": [\n')
        for i, it in enumerate(doc["items"]):
            sep = "," if i + 1 < n else ""
            f.write("    " + json.dumps(it, ensure_ascii=False) + sep + "\n")
        f.write("  ]\n}\n")
    os.replace(tmp, json_path)
    # sanity: re-read and compare
    back = np.asarray(Image.open(png_path).convert("RGB"))
    assert back.shape == atlas.shape and np.array_equal(back, atlas), "atlas round-trip mismatch"
    json.load(open(json_path))
    print(f"wrote {png_path} ({os.path.getsize(png_path)} bytes, {atlas.shape[1]}x{atlas.shape[0]}, "
          f"{n} tiles) and {json_path}", file=sys.stderr)


# ----------------------------------------------------------------------------
# emoji mode
# ----------------------------------------------------------------------------

def fetch_tgz(scratch):
    if shutil.which("npm") is None:
        die("npm not found; install node/npm or pass --tgz PATH to an already downloaded tarball")
    spec = f"{PACKAGE}@{VERSION}"
    print(f"npm pack {spec} into {scratch}", file=sys.stderr)
    r = subprocess.run(["npm", "pack", spec, "--silent"], cwd=scratch,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        die(f"npm pack failed (exit {r.returncode}):\n{r.stderr}")
    path = os.path.join(scratch, TGZ_NAME)
    if not os.path.exists(path):
        die(f"npm pack did not produce {TGZ_NAME} in {scratch}: {r.stdout!r}")
    return path


def codepoint_key(unified):
    return tuple(int(cp, 16) for cp in unified.split("-"))


def build_emoji(args):
    scratch = None
    if args.tgz:
        tgz = args.tgz
    else:
        scratch = tempfile.mkdtemp(prefix="emoji_pack_", dir="/tmp")
        tgz = fetch_tgz(scratch)
    digest = sha256_file(tgz)
    if digest != TGZ_SHA256:
        die(f"SHA-256 mismatch for {tgz}:\n  expected {TGZ_SHA256}\n  got      {digest}\n"
            "refusing to build the atlas from an unverified package")
    print(f"sha256 OK {digest}", file=sys.stderr)

    with tarfile.open(tgz, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}

        def read(name):
            m = members.get("package/" + name)
            if m is None:
                die(f"{name} missing from {tgz}")
            return tar.extractfile(m).read()

        emoji = json.loads(read("emoji.json"))
        entries = []
        for e in emoji:
            if e["category"] in SKIP_CATEGORIES:
                continue
            base_name = (e.get("name") or e.get("short_name") or e["unified"]).lower()
            if e.get("has_img_google"):
                entries.append((e["unified"], e["category"], base_name, e["image"]))
            for key, sv in sorted((e.get("skin_variations") or {}).items()):
                if not sv.get("has_img_google"):
                    continue
                tones = ", ".join(SKIN_TONE_NAMES.get(k, k) for k in key.split("-"))
                entries.append((sv["unified"], e["category"], f"{base_name}: {tones}", sv["image"]))
        entries.sort(key=lambda x: codepoint_key(x[0]))
        if len({u for u, *_ in entries}) != len(entries):
            die("duplicate unified code points in emoji.json")

        tiles, items = [], []
        for unified, category, name, image in entries:
            raw = read(f"img/google/64/{image}")
            im = Image.open(io.BytesIO(raw))
            im.load()
            a = to_rgb_on_white(im)
            if a.shape[:2] != (64, 64):
                die(f"{image}: expected 64x64, got {a.shape[1]}x{a.shape[0]}")
            tiles.append(quantize(box_downsample(a, args.size)))
            items.append({"unified": unified, "category": category, "name": name})

    if scratch and not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{len(tiles)} emoji images", file=sys.stderr)
    write_atlas(tiles, {"source": f"{PACKAGE}@{VERSION}", "sha256": digest, "items": items},
                args.out, args.size, args.columns)


# ----------------------------------------------------------------------------
# folder mode
# ----------------------------------------------------------------------------

def build_folder(args):
    root = os.path.abspath(args.folder)
    if not os.path.isdir(root):
        die(f"{root} is not a directory")
    files = []
    for d, dirs, names in os.walk(root):
        dirs.sort()
        for n in names:
            if os.path.splitext(n)[1].lower() in IMAGE_EXTS:
                files.append(os.path.relpath(os.path.join(d, n), root))
    files.sort()
    if not files:
        die(f"no .png/.jpg/.jpeg files under {root}")
    manifest = hashlib.sha256()
    tiles, items = [], []
    for rel in files:
        path = os.path.join(root, rel)
        try:
            im = Image.open(path)
            im.load()
        except Exception as ex:  # noqa: BLE001 - report and skip unreadable files
            print(f"skipping {rel}: {ex}", file=sys.stderr)
            continue
        a = centre_square(to_rgb_on_white(im))
        tiles.append(quantize(box_downsample(a, args.size)))
        items.append({"unified": "", "category": "folder", "name": rel.replace(os.sep, "/")})
        manifest.update(f"{rel.replace(os.sep, '/')}\t{sha256_file(path)}\n".encode())
    print(f"{len(tiles)} images from {root}", file=sys.stderr)
    write_atlas(tiles, {"source": f"folder:{os.path.basename(root.rstrip('/'))}",
                        "sha256": manifest.hexdigest(), "items": items},
                args.out, args.size, args.columns)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None,
                   help="output prefix (writes PREFIX.png and PREFIX.json); "
                        "default data/emoji32 in emoji mode, required with --folder")
    p.add_argument("--size", type=int, default=32, help="tile size in pixels (default 32)")
    p.add_argument("--columns", type=int, default=COLUMNS, help="tiles per atlas row (default 64)")
    p.add_argument("--tgz", default=None, help="use this already downloaded tarball instead of npm pack "
                                               "(its SHA-256 is still verified)")
    p.add_argument("--keep", action="store_true", help="keep the npm scratch directory")
    p.add_argument("--folder", default=None, help="build from a folder of PNG/JPEG images instead")
    args = p.parse_args()
    if args.size < 1 or args.columns < 1:
        die("--size and --columns must be positive")
    if args.folder:
        if not args.out:
            die("--folder needs --out PREFIX")
        build_folder(args)
    else:
        if args.out is None:
            args.out = os.path.join(REPO_ROOT, "data", "emoji32")
        if 64 % args.size != 0:
            print(f"note: 64 is not a multiple of --size {args.size}; using Pillow BOX resampling",
                  file=sys.stderr)
        build_emoji(args)


if __name__ == "__main__":
    main()
