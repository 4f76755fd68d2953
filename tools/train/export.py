"""Read and write canopy weights files (.cnw, format version 1).

The format is specified in models/FORMAT.md; this module is its only writer.
It needs numpy only (torch is imported lazily by the checkpoint exporter), so
evaluate.py can read a .cnw back without PyTorch.

Command line:
    python export.py CHECKPOINT.pt OUT.cnw [--version crown-1.0]
        export a checkpoint written by train.py
    python export.py --check FILE.cnw
        read a .cnw back, verify everything, print a summary
"""

import argparse
import json
import struct
import sys
import zlib

import numpy as np

MAGIC = b"CNPYWTS\0"
FORMAT_VERSION = 1
DTYPE_F32 = 1
ALIGN = 16


class CnwError(Exception):
    """A .cnw file that is truncated, corrupt or disagrees with its architecture."""


def _pad_to(n, align=ALIGN):
    return (align - n % align) % align


def arch_json_bytes(arch):
    """Canonical UTF-8 encoding of the architecture description."""
    return json.dumps(arch, separators=(",", ":"), ensure_ascii=True).encode("utf-8")


def required_tensors(arch):
    """Names and shapes every conv layer of arch needs, in layer order."""
    out = []
    for layer in arch["layers"]:
        if layer["type"] == "conv":
            k = layer["k"]
            out.append((layer["name"] + ".weight", (layer["out"], layer["in"], k, k)))
            out.append((layer["name"] + ".bias", (layer["out"],)))
        elif layer["type"] != "maxpool":
            raise CnwError("unknown layer type %r" % layer["type"])
    return out


def validate_arch(arch):
    """Check the structural rules of FORMAT.md; raise CnwError on a violation."""
    for key in ("name", "version", "stride", "input", "layers", "outputs"):
        if key not in arch:
            raise CnwError("architecture lacks %r" % key)
    if arch["input"]["channels"] != ["r", "g", "b", "exg"]:
        raise CnwError("input channels must be r,g,b,exg")
    if len(arch["input"]["mean"]) != 4 or len(arch["input"]["std"]) != 4:
        raise CnwError("input mean/std must have 4 entries")
    if any(s <= 0 for s in arch["input"]["std"]):
        raise CnwError("input std must be positive")
    pools = 0
    channels = 4
    convs = [l for l in arch["layers"] if l["type"] == "conv"]
    if not convs:
        raise CnwError("no conv layer")
    for layer in arch["layers"]:
        if layer["type"] == "maxpool":
            pools += 1
        elif layer["type"] == "conv":
            if layer["in"] != channels:
                raise CnwError("layer %s: in=%d but %d channels arrive"
                               % (layer["name"], layer["in"], channels))
            if layer["k"] % 2 != 1 or layer["dilation"] < 1:
                raise CnwError("layer %s: k must be odd, dilation >= 1" % layer["name"])
            if layer["act"] not in ("relu", "none"):
                raise CnwError("layer %s: unknown act %r" % (layer["name"], layer["act"]))
            channels = layer["out"]
        else:
            raise CnwError("unknown layer type %r" % layer["type"])
    if 2 ** pools != arch["stride"]:
        raise CnwError("stride %d but %d maxpools" % (arch["stride"], pools))
    if arch["layers"][-1]["type"] != "conv" or channels != 4:
        raise CnwError("last layer must be a conv with 4 outputs")
    if arch["outputs"] != ["heatmap", "log_radius", "dx", "dy"]:
        raise CnwError("outputs must be heatmap, log_radius, dx, dy")


def write_cnw(path, arch, tensors):
    """Write arch (dict) and tensors (list of (name, ndarray)) to path.

    Tensors are stored as float32 little-endian in the given order; every
    tensor the architecture needs must be present with the right shape.
    Returns the bytes written.
    """
    validate_arch(arch)
    names = [n for n, _ in tensors]
    if len(set(names)) != len(names):
        raise CnwError("duplicate tensor names")
    have = {n: np.asarray(a).shape for n, a in tensors}
    for name, shape in required_tensors(arch):
        if name not in have:
            raise CnwError("missing tensor %s" % name)
        if tuple(have[name]) != tuple(shape):
            raise CnwError("tensor %s has shape %s, architecture needs %s"
                           % (name, have[name], shape))

    aj = arch_json_bytes(arch)
    head = bytearray()
    head += MAGIC
    head += struct.pack("<II", FORMAT_VERSION, len(aj))
    head += aj
    head += struct.pack("<I", len(tensors))
    # directory size is known before the offsets are
    dir_size = 0
    for name, a in tensors:
        a = np.asarray(a)
        if not 1 <= a.ndim <= 4:
            raise CnwError("tensor %s: ndim %d not in 1..4" % (name, a.ndim))
        dir_size += 2 + len(name.encode("ascii")) + 1 + 1 + 4 * a.ndim + 8 + 8
    offset = len(head) + dir_size
    offset += _pad_to(offset)
    directory = bytearray()
    blobs = []
    for name, a in tensors:
        a = np.ascontiguousarray(np.asarray(a, dtype="<f4"))
        nb = name.encode("ascii")
        directory += struct.pack("<H", len(nb)) + nb
        directory += struct.pack("<BB", DTYPE_F32, a.ndim)
        directory += struct.pack("<%dI" % a.ndim, *a.shape)
        directory += struct.pack("<QQ", offset, a.nbytes)
        blobs.append((offset, a.tobytes()))
        offset += a.nbytes
        offset += _pad_to(offset)
    out = bytearray(head + directory)
    for off, data in blobs:
        out += b"\0" * (off - len(out))
        out += data
    out += struct.pack("<I", zlib.crc32(bytes(out)) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(out)
    return bytes(out)


def read_cnw(path):
    """Read and fully verify a .cnw file. Returns (arch, {name: float32 ndarray})."""
    with open(path, "rb") as f:
        buf = f.read()
    return parse_cnw(buf, path)


def parse_cnw(buf, what="<buffer>"):
    def need(pos, n, field):
        if pos + n > len(buf) - 4:
            raise CnwError("%s: truncated in %s" % (what, field))

    if len(buf) < 8 + 4 + 4 + 4 + 4:
        raise CnwError("%s: truncated (%d bytes)" % (what, len(buf)))
    if buf[:8] != MAGIC:
        raise CnwError("%s: bad magic" % what)
    crc_stored = struct.unpack_from("<I", buf, len(buf) - 4)[0]
    crc = zlib.crc32(buf[:-4]) & 0xFFFFFFFF
    if crc != crc_stored:
        raise CnwError("%s: CRC mismatch (stored %08x, computed %08x)" % (what, crc_stored, crc))
    version, arch_len = struct.unpack_from("<II", buf, 8)
    if version != FORMAT_VERSION:
        raise CnwError("%s: format version %d, expected %d" % (what, version, FORMAT_VERSION))
    pos = 16
    need(pos, arch_len, "architecture JSON")
    arch = json.loads(buf[pos:pos + arch_len].decode("utf-8"))
    pos += arch_len
    validate_arch(arch)
    need(pos, 4, "tensor_count")
    (count,) = struct.unpack_from("<I", buf, pos)
    pos += 4
    tensors = {}
    for _ in range(count):
        need(pos, 2, "tensor name length")
        (nl,) = struct.unpack_from("<H", buf, pos)
        pos += 2
        need(pos, nl + 2, "tensor name")
        name = buf[pos:pos + nl].decode("ascii")
        pos += nl
        dtype, ndim = struct.unpack_from("<BB", buf, pos)
        pos += 2
        if dtype != DTYPE_F32:
            raise CnwError("%s: tensor %s has dtype %d" % (what, name, dtype))
        if not 1 <= ndim <= 4:
            raise CnwError("%s: tensor %s has ndim %d" % (what, name, ndim))
        need(pos, 4 * ndim + 16, "tensor dims")
        dims = struct.unpack_from("<%dI" % ndim, buf, pos)
        pos += 4 * ndim
        off, nbytes = struct.unpack_from("<QQ", buf, pos)
        pos += 16
        if off % ALIGN:
            raise CnwError("%s: tensor %s offset %d not 16-aligned" % (what, name, off))
        if nbytes != 4 * int(np.prod(dims)):
            raise CnwError("%s: tensor %s byte count disagrees with dims" % (what, name))
        if off + nbytes > len(buf) - 4:
            raise CnwError("%s: tensor %s data past end of file" % (what, name))
        if name in tensors:
            raise CnwError("%s: duplicate tensor %s" % (what, name))
        tensors[name] = np.frombuffer(buf, dtype="<f4", count=nbytes // 4,
                                      offset=off).reshape(dims).astype(np.float32)
    for name, shape in required_tensors(arch):
        if name not in tensors:
            raise CnwError("%s: missing tensor %s" % (what, name))
        if tuple(tensors[name].shape) != tuple(shape):
            raise CnwError("%s: tensor %s has shape %s, architecture needs %s"
                           % (what, name, tensors[name].shape, shape))
    return arch, tensors


def export_checkpoint(ckpt_path, out_path, version=None):
    """Export a train.py checkpoint (torch.save dict with 'arch' and 'state')."""
    import torch  # lazy: the reader side needs numpy only
    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    arch = ck["arch"]
    if version:
        arch = dict(arch, version=version)
    state = ck["state"]
    tensors = []
    for name, _shape in required_tensors(arch):
        tensors.append((name, state[name].detach().cpu().numpy().astype(np.float32)))
    write_cnw(out_path, arch, tensors)
    # round trip: read back and compare bit for bit
    arch2, t2 = read_cnw(out_path)
    assert arch2 == json.loads(arch_json_bytes(arch))
    for name, a in tensors:
        assert np.array_equal(t2[name], a), name
    return arch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="checkpoint .pt (or .cnw with --check)")
    ap.add_argument("out", nargs="?", help="output .cnw")
    ap.add_argument("--version", help="override the version string")
    ap.add_argument("--check", action="store_true", help="verify a .cnw and print a summary")
    a = ap.parse_args(argv)
    if a.check:
        arch, tensors = read_cnw(a.src)
        nparams = sum(int(t.size) for t in tensors.values())
        print("%s: %s version=%s stride=%d layers=%d tensors=%d params=%d"
              % (a.src, arch["name"], arch["version"], arch["stride"],
                 len(arch["layers"]), len(tensors), nparams))
        return 0
    if not a.out:
        ap.error("need OUT.cnw")
    arch = export_checkpoint(a.src, a.out, a.version)
    print("wrote %s (%s)" % (a.out, arch["version"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
