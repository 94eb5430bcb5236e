"""The mutations of :mod:`posecurator.io.fuzz`: each takes a file's bytes and a seeded
``random.Random`` and returns the mutated bytes and a short description of what changed.

:data:`MUTATIONS` maps a file kind ("text": BVH, AMC, ASF, CSV; "json"; "npz") to its operators:

* text: byte flips, truncation, lines inserted / deleted / duplicated / swapped, a number replaced
  by nan, inf, 1e20, 1e-320, a 20-digit integer or a word, a token replaced by a keyword or a
  300-character word, CRLF or CR endings, gzip (intact, truncated or corrupt), an empty file;
* json: a field replaced by a value of the wrong type or range (:func:`bad_json_value`), a key
  deleted, a list element's field copied into another (duplicate ids), a value wrapped in a list,
  and the byte-level ones;
* npz: a member's .npy header garbled (flipped bytes, broken syntax, odd shapes and dtypes), values
  set out of range, dtypes changed (complex, text, records...), shapes changed, text members
  changed (the metadata JSON field by field, a 20-digit frame number in an imgname), members
  dropped or added, and byte flips / truncation of the zip.

The mutated npz files are written with numpy's own .npy writer, never with pickle.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import math
import random
import re
import zipfile
from typing import Callable

import numpy as np

# ====================================================================== mutations: values
_BAD_NUMBERS = ("nan", "inf", "-inf", "1e20", "-1e20", "1e300", "1e-320", "0", "-1", "99999999999999999999",
                "1e400", "abc", "", "1e7", "123456789012", "0x1F", "1,5", "--1")
_BAD_TOKENS = ("{", "}", "End", "Site", "JOINT", "ROOT", "OFFSET", "CHANNELS", "MOTION", ":units", ":bonedata",
               "begin", "end", "root", "dof", "\x00", "ÿ")


def bad_json_value(rng: random.Random):
    """A value of the wrong type or range for any JSON field."""
    choices = (
        lambda: [1, 2], lambda: {"a": 1}, lambda: "text", lambda: None, lambda: math.inf, lambda: -math.inf,
        lambda: math.nan, lambda: 1e29, lambda: 2**40, lambda: 2**64, lambda: -1, lambda: 0, lambda: 1000,
        lambda: True, lambda: 1e-320, lambda: 10**30, lambda: "", lambda: [], lambda: {}, lambda: -1e20,
        lambda: 12345678901234567890, lambda: "x" * 5000, lambda: 0.5, lambda: "1e5", lambda: [[[[1]]]],
        lambda: list(range(60)),
    )
    return rng.choice(choices)()


def _describe(value) -> str:
    text = json.dumps(value, allow_nan=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


# ====================================================================== mutations: text
def _lines(data: bytes) -> list[str]:
    return data.decode("latin-1").split("\n")


def _join(lines: list[str]) -> bytes:
    return "\n".join(lines).encode("latin-1")


def _byte_flip(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    if not data:
        return b"\x00", "empty file -> one NUL byte"
    buf = bytearray(data)
    positions = sorted(rng.randrange(len(buf)) for _ in range(rng.randint(1, 8)))
    for p in positions:
        buf[p] = rng.choice((0, 0xFF, 0x0A, 0x7B, 0x20, rng.randrange(256)))
    return bytes(buf), f"bytes at {positions[:3]}{'...' if len(positions) > 3 else ''}"


def _truncate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    cut = rng.randrange(len(data)) if data else 0
    return data[:cut], f"cut at byte {cut} of {len(data)}"


def _insert_line(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    lines = _lines(data)
    at = rng.randrange(len(lines) + 1)
    new = rng.choice((rng.choice(lines), "garbage line !@#", " ".join(["1e20"] * rng.randint(1, 70)), "", "{", "}",
                      "0 " * 200, "x" * 300))
    lines.insert(at, new)
    return _join(lines), f"line {at + 1} inserted: {_describe(new)}"


def _delete_lines(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    lines = _lines(data)
    at, n = rng.randrange(len(lines)), rng.randint(1, 3)
    del lines[at:at + n]
    return _join(lines), f"{n} line(s) deleted at line {at + 1}"


def _duplicate_line(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    lines = _lines(data)
    at = rng.randrange(len(lines))
    lines.insert(at, lines[at])
    return _join(lines), f"line {at + 1} duplicated"


def _swap_lines(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    lines = _lines(data)
    a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[a], lines[b] = lines[b], lines[a]
    return _join(lines), f"lines {a + 1} and {b + 1} swapped"


_NUMBER = re.compile(rb"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _replace_number(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A number token (searched from a random place, so every part of the file gets hit) replaced."""
    start = rng.randrange(len(data)) if data else 0
    m = _NUMBER.search(data, start) or _NUMBER.search(data)
    if m is None:
        return _byte_flip(data, rng)
    new = rng.choice(_BAD_NUMBERS).encode()
    line = data.count(b"\n", 0, m.start()) + 1
    return data[:m.start()] + new + data[m.end():], f"line {line}: {m.group().decode()[:20]!r} -> {new.decode()!r}"


def _replace_token(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    tokens = list(re.finditer(rb"\S+", data))
    if not tokens:
        return _byte_flip(data, rng)
    m = rng.choice(tokens)
    new = rng.choice(_BAD_TOKENS + ("x" * 300, rng.choice(tokens).group().decode("latin-1"))).encode("latin-1")
    line = data.count(b"\n", 0, m.start()) + 1
    return data[:m.start()] + new + data[m.end():], f"line {line}: token {m.group()[:20].decode('latin-1')!r} -> {_describe(new.decode('latin-1'))}"


def _crlf(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    if rng.random() < 0.5:
        return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), "CRLF line endings"
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r"), "CR line endings"


def _gzip(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    packed = gzip.compress(data, mtime=0)
    what = rng.choice(("intact", "truncated", "flipped"))
    if what == "truncated":
        packed = packed[: rng.randrange(2, len(packed))]
    elif what == "flipped":
        packed = _byte_flip(packed[:10], rng)[0][:2] + _byte_flip(packed[2:], rng)[0] if rng.random() < 0.2 else \
            packed[:10] + _byte_flip(packed[10:], rng)[0]
    return packed, f"gzip-compressed ({what})"


def _empty(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    return b"", "emptied"


# ====================================================================== mutations: JSON
def _random_path(doc, rng: random.Random) -> list:
    """Keys from the root to a random node; containers are chosen as well as leaves."""
    path, node = [], doc
    while isinstance(node, (dict, list)) and node and (not path or rng.random() > 0.2):
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append(key)
        node = node[key]
    return path


def _at(doc, path: list):
    for key in path:
        doc = doc[key]
    return doc


def _path_text(path: list) -> str:
    text = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path) or "<root>"
    return text if len(text) <= 60 else "..." + text[-57:]


def _json_value(doc, rng: random.Random):
    path = _random_path(doc, rng)
    value = bad_json_value(rng)
    if not path:
        return value, f"whole document -> {_describe(value)}"
    _at(doc, path[:-1])[path[-1]] = value
    return doc, f"{_path_text(path)} -> {_describe(value)}"


def _json_delete(doc, rng: random.Random):
    path = _random_path(doc, rng)
    if not path:
        return doc, "nothing deleted"
    parent = _at(doc, path[:-1])
    del parent[path[-1]]
    return doc, f"{_path_text(path)} deleted"


def _json_duplicate(doc, rng: random.Random):
    """A field of one list element copied into another (ids duplicated), or an element repeated."""
    lists = []

    def walk(node, path, depth):
        if depth > 4:
            return
        if isinstance(node, list) and len(node) >= 2 and isinstance(node[0], dict):
            lists.append(path)
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in list(items)[:5]:
            walk(v, path + [k], depth + 1)

    walk(doc, [], 0)
    if not lists:
        return _json_value(doc, rng)
    path = rng.choice(lists)
    items = _at(doc, path)
    a, b = rng.randrange(len(items)), rng.randrange(len(items))
    if rng.random() < 0.3 or not isinstance(items[a], dict) or not isinstance(items[b], dict) or not items[a]:
        items.append(json.loads(json.dumps(items[a])))
        return doc, f"{_path_text(path)}[{a}] repeated"
    key = rng.choice(sorted(items[a]))
    items[b][key] = json.loads(json.dumps(items[a][key]))
    return doc, f"{_path_text(path)}[{b}].{key} = [{a}].{key} (duplicated)"


def _json_wrap(doc, rng: random.Random):
    path = _random_path(doc, rng)
    if not path:
        return [doc], "whole document wrapped in a list"
    parent = _at(doc, path[:-1])
    parent[path[-1]] = [parent[path[-1]]]
    return doc, f"{_path_text(path)} wrapped in a list"


def _json_bytes(mutate_doc: Callable) -> Callable:
    """A JSON-level mutation as a bytes -> bytes one (falls back to byte flips on unparsable input)."""
    def mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return _byte_flip(data, rng)
        doc, detail = mutate_doc(doc, rng)
        indent = 1 if b"\n " in data[:200] else None
        return json.dumps(doc, indent=indent, allow_nan=True).encode("utf-8"), detail
    return mutate


# ====================================================================== mutations: npz
def _npz_members(data: bytes) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info, zf.read(info)) for info in zf.infolist()]


def _npz_pack(members: list[tuple[zipfile.ZipInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for info, raw in members:
            zf.writestr(info, raw)  # the ZipInfo keeps each member's compression
    return buf.getvalue()


def _npy_split(raw: bytes) -> tuple[str, bytes]:
    """(header text, data bytes) of a .npy member."""
    size = 2 if raw[6] == 1 else 4
    length = int.from_bytes(raw[8:8 + size], "little")
    return raw[8 + size: 8 + size + length].decode("latin-1"), raw[8 + size + length:]


def _npy_join(header: str, data: bytes) -> bytes:
    """A .npy member (format 1.0, or 2.0 for a long header) with ``header`` padded as numpy does."""
    text = header.rstrip("\n")
    big = len(text) + 12 > 65535
    prefix = 12 if big else 10
    pad = (-(prefix + len(text) + 1)) % 64
    body = (text + " " * pad + "\n").encode("latin-1")
    version = b"\x02\x00" if big else b"\x01\x00"
    return b"\x93NUMPY" + version + len(body).to_bytes(4 if big else 2, "little") + body + data


def _load_member(raw: bytes) -> np.ndarray | None:
    """The array of a .npy member, or None for an object array (never unpickled)."""
    try:
        return np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)
    except ValueError:
        return None


def _save_member(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
    return buf.getvalue()


def _pick_member(members, rng: random.Random, want: Callable[[np.ndarray], bool]):
    """(index, array) of a random member whose array passes ``want``; None when none does."""
    order = list(range(len(members)))
    rng.shuffle(order)
    for k in order:
        if members[k][0].filename.endswith(".npy"):
            arr = _load_member(members[k][1])
            if arr is not None and want(arr):
                return k, arr
    return None


def _npz_array_mutation(change: Callable, want: Callable[[np.ndarray], bool]) -> Callable:
    """An npz mutation that changes one member's array: ``change(arr, rng) -> (arr, detail)``."""
    def mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
        members = _npz_members(data)
        picked = _pick_member(members, rng, want)
        if picked is None:
            return _byte_flip(data, rng)
        k, arr = picked
        arr, detail = change(arr, rng)
        members[k] = (members[k][0], _save_member(arr))
        return _npz_pack(members), f"{members[k][0].filename[:-4]}: {detail}"
    return mutate


def _is_numeric(arr: np.ndarray) -> bool:
    return arr.dtype.kind in "iuf" and arr.size > 0


def _set_values(arr: np.ndarray, rng: random.Random) -> tuple[np.ndarray, str]:
    """A few elements set to values out of range (floats: nan, inf, 1e20...; ints: beyond int32...)."""
    arr = arr.copy()
    if arr.dtype.kind == "f":
        value = rng.choice((np.nan, np.inf, -np.inf, 1e20, -1e30, 1e300, 5e5, -1.0, 0.0, 1e-320))
    else:
        arr = arr.astype(np.int64)
        value = rng.choice((-1, -(2**31) - 5, 2**31 + 5, 2**62, 10**9, 0))
    flat = arr.reshape(-1)
    idx = sorted({rng.randrange(flat.size) for _ in range(rng.randint(1, 3))})
    flat[idx] = value
    return arr, f"elements {idx[:3]} -> {value}"


def _change_dtype(arr: np.ndarray, rng: random.Random) -> tuple[np.ndarray, str]:
    kind = rng.choice(("complex", "str", "bytes", "bool", "float16", "int8", "uint64", "record", "datetime"))
    if arr.dtype.kind not in "iufb" and kind not in ("bytes", "record", "datetime"):
        kind = "record"   # text members: only casts that cannot fail
    if kind == "complex":
        out = arr.astype(np.complex128) + 1j * (1 + np.arange(arr.size).reshape(arr.shape) % 3)
    elif kind == "str":
        out = arr.astype(str)
    elif kind == "bytes":
        out = arr.astype("S24")
    elif kind == "bool":
        out = arr.astype(bool)
    elif kind == "float16":
        out = arr.astype(np.float16) if arr.dtype.kind in "iuf" else arr
    elif kind == "int8":
        with np.errstate(all="ignore"):
            out = arr.astype(np.int8) if arr.dtype.kind in "iuf" else arr
    elif kind == "uint64":
        with np.errstate(all="ignore"):
            out = np.nan_to_num(arr).astype(np.uint64) + np.uint64(2**63) if arr.dtype.kind in "iuf" else arr
    elif kind == "record":
        out = np.zeros(arr.shape, dtype=[("a", "<f8"), ("b", "<i4")])
    else:
        out = np.zeros(arr.shape, dtype="datetime64[s]")
    return out, f"dtype {arr.dtype} -> {out.dtype}"


def _change_shape(arr: np.ndarray, rng: random.Random) -> tuple[np.ndarray, str]:
    kind = rng.choice(("scalar", "empty", "drop_axis", "add_axis", "last_minus_one", "fewer_rows", "more_rows", "transpose"))
    if kind == "scalar" or arr.ndim == 0:
        out = np.asarray(arr.reshape(-1)[0] if arr.size else 0)
    elif kind == "empty":
        out = arr[:0]
    elif kind == "drop_axis":
        out = arr[..., 0]
    elif kind == "add_axis":
        out = arr[None]
    elif kind == "last_minus_one":
        out = arr[..., :-1]
    elif kind == "fewer_rows":
        out = arr[: max(0, len(arr) - rng.randint(1, 3))]
    elif kind == "more_rows":
        out = np.concatenate([arr, arr[:2]]) if len(arr) else arr
    else:
        out = arr.T
    return out, f"shape {arr.shape} -> {out.shape}"


def _change_text(arr: np.ndarray, rng: random.Random) -> tuple[np.ndarray, str]:
    """A string member: a JSON document mutated field by field, or one string changed."""
    if arr.ndim == 0:
        try:
            doc = json.loads(str(arr))
        except ValueError:
            doc = None
        if doc is not None:
            mutation = rng.choice((_json_value, _json_value, _json_value, _json_delete, _json_duplicate, _json_wrap))
            doc, detail = mutation(doc, rng)
            return np.array(json.dumps(doc, allow_nan=True)), f"JSON {detail}"
        return np.array(str(arr)[: len(str(arr)) // 2]), "text cut in half"
    out = arr.astype(object)
    i = rng.randrange(out.size)
    old = str(out.flat[i])
    kind = rng.choice(("frame20", "no_separators", "empty", "unicode", "long"))
    new = {"frame20": re.sub(r"_(\d+)\.jpg$", "_99999999999999999999.jpg", old) if old.endswith(".jpg") else old + "9" * 20,
           "no_separators": re.sub(r"[_./]", "", old), "empty": "", "unicode": old + "\u0662\u00e9",
           "long": old + "x" * 500}[kind]
    out.flat[i] = new
    return out.astype(str), f"string {i}: {kind}"


def _garble_header(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One member's .npy header garbled: flipped bytes, broken syntax, wrong or huge shapes, odd dtypes."""
    members = _npz_members(data)
    npy = [k for k, (info, _) in enumerate(members) if info.filename.endswith(".npy")]
    if not npy:
        return _byte_flip(data, rng)
    k = rng.choice(npy)
    info, raw = members[k]
    header, body = _npy_split(raw)
    try:
        d = ast.literal_eval(header)
    except (ValueError, SyntaxError):
        d = None
    kind = rng.choice(("bytes", "unterminated", "not_dict", "extra_key", "shape_huge", "shape_negative", "shape_bigger",
                       "shape_other", "descr", "fortran", "version"))
    if kind == "bytes" or d is None:
        new_raw = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            new_raw[rng.randrange(6, min(len(raw), 10 + len(header)))] = rng.randrange(256)
        members[k] = (info, bytes(new_raw))
    elif kind == "version":
        members[k] = (info, raw[:6] + bytes([rng.choice((0, 3, 9, 255)), 0]) + raw[8:])
    else:
        if kind == "unterminated":
            text = header.rstrip()[: rng.randrange(1, max(2, len(header.rstrip())))] + rng.choice(("'", "(", "{'a", '"'))
        elif kind == "not_dict":
            text = rng.choice(("[1, 2, 3]", "None", "'descr'", "{1: 2}", "__import__('os')"))
        else:
            d = dict(d)
            shape = tuple(d["shape"])
            if kind == "extra_key":
                d["extra"] = 1
            elif kind == "shape_huge":
                d["shape"] = (10**12,) + shape[1:] if shape else (10**12,)
            elif kind == "shape_negative":
                d["shape"] = (-3,) + shape[1:]
            elif kind == "shape_bigger":
                d["shape"] = tuple(s * 2 + 1 for s in shape) or (5,)
            elif kind == "shape_other":
                d["shape"] = rng.choice(((), (1,), shape + (2,), shape[:-1], (2**40, 2**40)))
            elif kind == "descr":
                d["descr"] = rng.choice(("<c16", "|O", "<U3", "|b1", ">f8", "<f2", "|V8", "<i8", "<u8", "<M8[s]",
                                         "xx", 42, [("a", "<f8")], "<f16"))
            elif kind == "fortran":
                d["fortran_order"] = rng.choice((True, 1, "yes"))
            text = repr(d)
        members[k] = (info, _npy_join(text, body))
    return _npz_pack(members), f"{info.filename}: header {kind}"


def _drop_member(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    members = _npz_members(data)
    if not members:
        return _byte_flip(data, rng)
    k = rng.randrange(len(members))
    name = members.pop(k)[0].filename
    return _npz_pack(members), f"member {name} removed"


def _extra_member(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    members = _npz_members(data)
    name = rng.choice(("unknown", "positions_3d.99999", "frame.00000", "joints3d", "sample_id", "x" * 100))
    arr = rng.choice((np.zeros(3), np.arange(5), np.array("text"), np.zeros((2, 17, 3))))
    members = [m for m in members if m[0].filename != name + ".npy"] + [(zipfile.ZipInfo(name + ".npy"), _save_member(arr))]
    return _npz_pack(members), f"member {name[:20]}.npy added ({arr.dtype} {arr.shape})"


# ====================================================================== mutation tables
TEXT_MUTATIONS: dict[str, Callable] = {
    "byte_flip": _byte_flip, "truncate": _truncate, "insert_line": _insert_line, "delete_lines": _delete_lines,
    "duplicate_line": _duplicate_line, "swap_lines": _swap_lines, "number": _replace_number, "token": _replace_token,
    "crlf": _crlf, "gzip": _gzip, "empty": _empty,
}
JSON_MUTATIONS: dict[str, Callable] = {
    "json_value": _json_bytes(_json_value), "json_delete": _json_bytes(_json_delete),
    "json_duplicate": _json_bytes(_json_duplicate), "json_wrap": _json_bytes(_json_wrap),
    "number": _replace_number, "byte_flip": _byte_flip, "truncate": _truncate, "empty": _empty,
}
NPZ_MUTATIONS: dict[str, Callable] = {
    "npy_header": _garble_header,
    "npz_values": _npz_array_mutation(_set_values, _is_numeric),
    "npz_dtype": _npz_array_mutation(_change_dtype, lambda a: a.size > 0),
    "npz_shape": _npz_array_mutation(_change_shape, lambda a: True),
    "npz_text": _npz_array_mutation(_change_text, lambda a: a.dtype.kind == "U"),
    "npz_drop_member": _drop_member, "npz_extra_member": _extra_member,
    "byte_flip": _byte_flip, "truncate": _truncate,
}
# JSON mutations that change the document's values are drawn more often than raw byte damage
WEIGHTS = {"json_value": 4, "npz_values": 2, "npz_text": 2, "npy_header": 2, "number": 3}
MUTATIONS = {"text": TEXT_MUTATIONS, "json": JSON_MUTATIONS, "npz": NPZ_MUTATIONS}
