//! Hand-made pickles and containers: what torch writes is read, and what it does not write
//! (other globals, lies about sizes, absurd nesting, damage) is refused with a reason.

use super::object::{Obj, Value};
use super::pickle;
use super::*;
use std::io::Write;

fn s(x: &str) -> Vec<u8> {
    let mut v = vec![b'X'];
    v.extend((x.len() as u32).to_le_bytes());
    v.extend(x.as_bytes());
    v
}

fn g(module: &str, name: &str) -> Vec<u8> {
    format!("c{module}\n{name}\n").into_bytes()
}

fn int(i: i32) -> Vec<u8> {
    let mut v = vec![b'J'];
    v.extend(i.to_le_bytes());
    v
}

fn tuple(items: &[Vec<u8>]) -> Vec<u8> {
    [b"(".to_vec(), items.concat(), b"t".to_vec()].concat()
}

fn ints(xs: &[i32]) -> Vec<u8> {
    tuple(&xs.iter().map(|&x| int(x)).collect::<Vec<_>>())
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`.
fn tensor(
    class: &str,
    key: &str,
    numel: i32,
    offset: i32,
    size: &[i32],
    stride: &[i32],
) -> Vec<u8> {
    let pid = tuple(&[
        s("storage"),
        g("torch", class),
        s(key),
        s("cpu"),
        int(numel),
    ]);
    let args = [
        b"(".to_vec(),
        pid,
        b"Q".to_vec(),
        int(offset),
        ints(size),
        ints(stride),
        vec![0x89],
        g("collections", "OrderedDict"),
        b")R".to_vec(),
        b"t".to_vec(),
    ];
    [
        g("torch._utils", "_rebuild_tensor_v2"),
        args.concat(),
        b"R".to_vec(),
    ]
    .concat()
}

fn dict(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let body: Vec<u8> = entries
        .iter()
        .flat_map(|(k, v)| [s(k), v.clone()].concat())
        .collect();
    [
        g("collections", "OrderedDict"),
        b")R(".to_vec(),
        body,
        b"u".to_vec(),
    ]
    .concat()
}

fn pickle(body: &[u8]) -> Vec<u8> {
    [&[0x80, 2][..], body, b"."].concat()
}

fn f32s(xs: &[f32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn zip_file(pkl: &[u8], members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("archive/data.pkl", o).unwrap();
    w.write_all(pkl).unwrap();
    for (name, bytes) in members {
        w.start_file(format!("archive/{name}"), o).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn legacy_file(pkl: &[u8], storages: &[(&str, u64, &[u8])]) -> Vec<u8> {
    let mut magic = vec![0x80, 2, 0x8a, 10];
    magic.extend(0x1950a86a20f9469cfc6c_u128.to_le_bytes()[..10].iter());
    magic.push(b'.');
    let version = pickle(&[b'M', 0xe9, 0x03]);
    let info = pickle(
        &[
            b"}(".to_vec(),
            s("little_endian"),
            vec![0x88],
            b"u".to_vec(),
        ]
        .concat(),
    );
    let keys: Vec<Vec<u8>> = storages.iter().map(|(k, _, _)| s(k)).collect();
    let keys = pickle(&[b"](".to_vec(), keys.concat(), b"e".to_vec()].concat());
    let mut out = [magic, version, info, pkl.to_vec(), keys].concat();
    for (_, count, bytes) in storages {
        out.extend(count.to_le_bytes());
        out.extend(*bytes);
    }
    out
}

/// w: 2×3 from 0..6; col: w[:, 1] (an offset, strided view); wt: w.t() (transposed strides).
fn views() -> (Vec<u8>, Vec<u8>) {
    let pkl = pickle(&dict(&[
        (
            "module.w",
            tensor("FloatStorage", "0", 6, 0, &[2, 3], &[3, 1]),
        ),
        ("col", tensor("FloatStorage", "0", 6, 1, &[2], &[3])),
        ("wt", tensor("FloatStorage", "0", 6, 0, &[3, 2], &[1, 3])),
        (
            "down.1.downsample.op.bias",
            tensor("HalfStorage", "1", 1, 0, &[1], &[1]),
        ),
        ("steps", int(7)),
    ]));
    (pkl, f32s(&[0., 1., 2., 3., 4., 5.]))
}

fn check_views(f: &TensorFile) {
    let names: Vec<&str> = f.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["w", "col", "wt", "down.1.downsample.conv.bias"]);
    assert_eq!(f.dtypes, ["F32", "F32", "F32", "F16"]);
    assert_eq!(f.get("w").unwrap().data, [0., 1., 2., 3., 4., 5.]);
    assert_eq!(f.get("col").unwrap().data, [1., 4.]);
    assert_eq!(f.get("wt").unwrap().shape, [3, 2]);
    assert_eq!(f.get("wt").unwrap().data, [0., 3., 1., 4., 2., 5.]);
    assert_eq!(f.get("down.1.downsample.conv.bias").unwrap().data, [1.5]);
    assert!(f.metadata.is_empty());
}

fn half(x: f32) -> Vec<u8> {
    half::f16::from_f32(x).to_le_bytes().to_vec()
}

#[test]
fn zip_and_legacy_containers_give_the_same_views() {
    let (pkl, w) = views();
    let b = half(1.5);
    let zip = zip_file(
        &pkl,
        &[("byteorder", b"little"), ("data/0", &w), ("data/1", &b)],
    );
    assert!(is_checkpoint(&zip));
    check_views(&parse(&zip, "z.pth", None).unwrap());
    let legacy = legacy_file(&pkl, &[("0", 6, &w), ("1", 1, &b)]);
    assert!(is_checkpoint(&legacy));
    check_views(&parse(&legacy, "l.pth", None).unwrap());
    let st = crate::safetensors::serialize(&[], crate::safetensors::Dtype::F32, &[]);
    assert!(!is_checkpoint(&st));
}

fn err(bytes: &[u8], entry: Option<i64>) -> String {
    let e = parse(bytes, "bad.pth", entry).unwrap_err().to_string();
    assert!(
        e.starts_with("bad.pth: not a readable PyTorch checkpoint: "),
        "{e}"
    );
    e
}

fn zipped(pkl: &[u8]) -> Vec<u8> {
    zip_file(pkl, &[("data/0", &f32s(&[0.; 6]))])
}

#[test]
fn other_globals_are_refused_by_name() {
    let call =
        |global: Vec<u8>| pickle(&[global, s("touch /tmp/pwned"), vec![0x85, b'R']].concat());
    let posix = call(g("posix", "system"));
    let stack_global = call([s("os"), s("system"), vec![0x93]].concat());
    let e = pickle::load(&posix).err().unwrap();
    assert!(e.contains("refused global posix.system"), "{e}");
    let e = pickle::load(&stack_global).err().unwrap();
    assert!(e.contains("refused global os.system"), "{e}");
    let e = err(&zipped(&posix), None);
    assert!(e.contains("refused global posix.system"), "{e}");
    let e = err(&legacy_file(&posix, &[]), None);
    assert!(e.contains("refused global posix.system"), "{e}");
    // A storage class torch does not have, and calling one that it has.
    let e = pickle::load(&call(g("torch", "load"))).err().unwrap();
    assert!(e.contains("refused global torch.load"), "{e}");
    let e = pickle::load(&call(g("torch", "FloatStorage")))
        .err()
        .unwrap();
    assert!(e.contains("Storage(F32)"), "{e}");
}

#[test]
fn nesting_and_cycles_do_not_recurse() {
    let deep_marks = pickle(&[vec![b'('; 100_000], vec![b't'; 100_000]].concat());
    let e = pickle::load(&deep_marks).err().unwrap();
    assert!(e.contains("marks nested deeper than 1000"), "{e}");
    // Lists 100,000 deep are fine to hold (the arena is flat) and are not a state dict.
    let deep_lists = pickle(&[vec![b']'; 100_000], vec![b'a'; 99_999]].concat());
    let e = err(&zipped(&deep_lists), None);
    assert!(e.contains("a list of 1 items"), "{e}");
    // A list that holds itself.
    let cycle = pickle(b"]q\x00h\x00a");
    let p = pickle::load(&cycle).unwrap();
    assert!(matches!(p.obj(&p.root), Some(Obj::List(l)) if l.len() == 1));
    assert!(err(&zipped(&cycle), Some(0)).contains("entry 0 is a list of 1 items"));
}

#[test]
fn lengths_past_the_end_are_errors() {
    let mut cases: Vec<Vec<u8>> = vec![
        [&[b'X'][..], &u32::MAX.to_le_bytes()].concat(),
        [&[0x8d][..], &u64::MAX.to_le_bytes()].concat(),
        [&[0x8e][..], &u64::MAX.to_le_bytes()].concat(),
        [&[0x8b][..], &u32::MAX.to_le_bytes()].concat(),
        vec![0x8a, 200, 1, 2],
    ];
    cases.push(b"ctorch\nFloatStor".to_vec());
    for c in cases {
        let e = pickle::load(&[&[0x80, 2][..], &c].concat()).err().unwrap();
        assert!(e.contains("past the end") || e.contains("newline"), "{e}");
    }
    for (bad, needle) in [
        (&b"\x80\x02h\x05."[..], "memo key 5"),
        (b"\x80\x02.", "underflow"),
        (b"\x80\x02K\x01e.", "MARK"),
        (b"\x80\x02}K\x01a.", "not a list"),
        (b"\x80\x02](K\x01K\x02u.", "not a dict"),
        (b"\x80\x02I1\n.", "opcode 0x49"),
        (b"\x80\x06N.", "protocol 6"),
        (b"\x80\x02N", "before its STOP"),
    ] {
        let e = pickle::load(bad).err().unwrap();
        assert!(e.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn views_outside_their_storage_are_refused() {
    let w = f32s(&[0.; 6]);
    let one = |t: Vec<u8>, data: &[u8]| {
        let pkl = pickle(&dict(&[("w", t)]));
        err(&zip_file(&pkl, &[("data/0", data)]), None)
    };
    let fl = "FloatStorage";
    for (t, needle) in [
        (tensor(fl, "0", 6, 1, &[6], &[1]), "do not fit"),
        (tensor(fl, "0", 6, 0, &[2, 3], &[4, 1]), "do not fit"),
        (
            tensor(
                fl,
                "0",
                6,
                0,
                &[1 << 30, 1 << 30, 1 << 30, 16],
                &[0, 0, 0, 0],
            ),
            "do not fit",
        ),
        // A broadcast view: in bounds, but more elements than the storage has.
        (tensor(fl, "0", 6, 0, &[1000], &[0]), "do not fit"),
        (
            tensor(fl, "0", 7, 0, &[6], &[1]),
            "declares 7 float32 elements but holds 24 bytes",
        ),
        (
            tensor(fl, "0", 6, -1, &[6], &[1]),
            "offset is not a non-negative",
        ),
        (tensor(fl, "0", 6, 0, &[6], &[1, 1]), "ranks differ"),
        (
            tensor(fl, "9", 6, 0, &[6], &[1]),
            "no member archive/data/9",
        ),
        (tensor("LongStorage", "0", 3, 0, &[3], &[1]), "int64"),
    ] {
        let e = one(t, &w);
        assert!(e.contains(needle), "{needle}: {e}");
    }
    // A size-1 dimension's stride never steps, whatever it is.
    let pkl = pickle(&dict(&[(
        "w",
        tensor(fl, "0", 6, 0, &[1, 6], &[i32::MAX, 1]),
    )]));
    let f = parse(&zip_file(&pkl, &[("data/0", &w)]), "ok.pth", None).unwrap();
    assert_eq!(f.get("w").unwrap().shape, [1, 6]);
    // A legacy stream whose storage claims more than the file holds.
    let pkl = pickle(&dict(&[("w", tensor(fl, "0", 6, 0, &[6], &[1]))]));
    let e = err(&legacy_file(&pkl, &[("0", 1 << 40, &w)]), None);
    assert!(e.contains("claims 1099511627776 float32 elements"), "{e}");
}

#[test]
fn the_entry_picks_the_weights() {
    let sd = |v: i32| {
        dict(&[(
            "w",
            tensor("FloatStorage", &v.to_string(), 1, 0, &[1], &[1]),
        )])
    };
    // Optimizer state holds integer tensors; they are never read, so they do no harm.
    let step = tensor("LongStorage", "2", 1, 0, &[], &[]);
    let per_param = [b"}(".to_vec(), s("step"), step, b"u".to_vec()].concat();
    let state = [b"}(".to_vec(), int(0), per_param, b"u".to_vec()].concat();
    let optimizer = [b"}(".to_vec(), s("state"), state, b"u".to_vec()].concat();
    let list = pickle(
        &[
            b"](".to_vec(),
            sd(0),
            optimizer,
            int(3),
            int(10),
            sd(1),
            b"e".to_vec(),
        ]
        .concat(),
    );
    let file = zip_file(&list, &[("data/0", &f32s(&[1.])), ("data/1", &f32s(&[2.]))]);
    let w = |entry| {
        parse(&file, "t.ckpt", entry)
            .unwrap()
            .get("w")
            .unwrap()
            .data[0]
    };
    assert_eq!(w(None), 2.0, "the EMA (last) by default");
    assert_eq!(w(Some(-1)), 2.0);
    assert_eq!(w(Some(0)), 1.0);
    assert_eq!(w(Some(-5)), 1.0);
    for (entry, needle) in [
        (1, "entry 1 is a dict with keys \"state\", not a state dict"),
        (2, "entry 2 is the integer 3"),
        (
            5,
            "entry 5 is out of range: the checkpoint is a list of 5 items",
        ),
        (-6, "entry -6 is out of range"),
    ] {
        let e = err(&file, Some(entry));
        assert!(e.contains(needle), "{needle}: {e}");
    }
    // A dict that holds the weights under a known key; an entry means nothing there.
    let wrapped = pickle(
        &[
            b"}(".to_vec(),
            s("epoch"),
            int(3),
            s("state_dict"),
            sd(0),
            b"u".to_vec(),
        ]
        .concat(),
    );
    let file = zip_file(&wrapped, &[("data/0", &f32s(&[1.]))]);
    assert_eq!(parse(&file, "d.pth", None).unwrap().tensors.len(), 1);
    assert!(err(&file, Some(0)).contains("not a list"));
    let e = err(&zipped(&pickle(b"}(X\x01\x00\x00\x00aK\x01u")), None);
    assert!(
        e.contains("no state dict in a checkpoint that is a dict with keys \"a\""),
        "{e}"
    );
}

#[test]
fn repeated_work_is_bounded() {
    // A long list fetched from the memo as a call's arguments is refused, not copied.
    let list = [b"]q\x00(".to_vec(), vec![b'N'; 100], b"e".to_vec()].concat();
    let call = [list, g("collections", "OrderedDict"), b"h\x00R".to_vec()].concat();
    let e = pickle::load(&pickle(&call)).err().unwrap();
    assert!(e.contains("a call's arguments has 100 items"), "{e}");
    let long_key = "7".repeat(300);
    let e = pickle::load(&pickle(&tensor(
        "FloatStorage",
        &long_key,
        1,
        0,
        &[1],
        &[1],
    )));
    assert!(e.err().unwrap().contains("a storage key of 300 bytes"));
    // One storage's tensor, memoised and named 100 times: more f32s than the file has bytes.
    let t = tensor("FloatStorage", "0", 1000, 0, &[1000], &[1]);
    let mut body = [g("collections", "OrderedDict"), b")R(".to_vec(), s("t0"), t].concat();
    body.extend(b"q\x01");
    for i in 1..100 {
        body.extend(s(&format!("t{i}")));
        body.extend(b"h\x01");
    }
    body.push(b'u');
    let file = zip_file(&pickle(&body), &[("data/0", &f32s(&[0.; 1000]))]);
    assert!(err(&file, None).contains("more elements than the file has bytes"));
}

#[test]
fn names_that_collide_are_refused() {
    let t = || tensor("FloatStorage", "0", 1, 0, &[1], &[1]);
    let pkl = pickle(&dict(&[("module.w", t()), ("w", t())]));
    let e = err(&zip_file(&pkl, &[("data/0", &f32s(&[1.]))]), None);
    assert!(e.contains("two entries map to the same name \"w\""), "{e}");
}

#[test]
fn a_key_set_twice_keeps_its_place_and_last_value() {
    let t = |k: &str| tensor("FloatStorage", k, 1, 0, &[1], &[1]);
    let pkl = pickle(&dict(&[("w", t("0")), ("b", t("1")), ("w", t("2"))]));
    let data = [
        ("data/0", f32s(&[1.])),
        ("data/1", f32s(&[2.])),
        ("data/2", f32s(&[3.])),
    ];
    let data: Vec<(&str, &[u8])> = data.iter().map(|(n, b)| (*n, &b[..])).collect();
    let f = parse(&zip_file(&pkl, &data), "d.pth", None).unwrap();
    let names: Vec<&str> = f.tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["w", "b"], "as Python's dict");
    assert_eq!(f.get("w").unwrap().data, [3.]);
    // 1, True and 1.0 are one key to Python; 0.5 is another.
    let keys =
        b"}(K\x01K\x01\x88K\x02G?\xf0\x00\x00\x00\x00\x00\x00K\x03G?\xe0\x00\x00\x00\x00\x00\x00Nu";
    let p = pickle::load(&pickle(keys)).unwrap();
    let Some(Obj::Dict(d)) = p.obj(&p.root) else {
        panic!("not a dict")
    };
    assert!(matches!(
        d[..],
        [
            (Value::Int(1), Value::Int(3)),
            (Value::Float(_), Value::None)
        ]
    ));
}

/// The (offset, length) of every zip header's compression field.
fn method_fields(zip: &[u8]) -> Vec<usize> {
    let mut at = Vec::new();
    for i in 0..zip.len().saturating_sub(4) {
        match &zip[i..i + 4] {
            b"PK\x03\x04" => at.push(i + 8),
            b"PK\x01\x02" => at.push(i + 10),
            _ => {}
        }
    }
    at
}

#[test]
fn damaged_archives_are_refused() {
    let (pkl, w) = views();
    let b = half(1.5);
    let good = zip_file(&pkl, &[("data/0", &w), ("data/1", &b)]);
    // Deflate, as a re-zipped archive would have it.
    let mut deflated = good.clone();
    for at in method_fields(&deflated) {
        deflated[at] = 8;
    }
    assert!(err(&deflated, None).contains("is compressed"));
    let big = zip_file(
        &pkl,
        &[("byteorder", b"big"), ("data/0", &w), ("data/1", &b)],
    );
    assert!(err(&big, None).contains("only little-endian"));
    // One flipped bit in a storage.
    let mut flipped = good.clone();
    let at = flipped.windows(w.len()).position(|x| x == &w[..]).unwrap();
    flipped[at + 9] ^= 1;
    assert!(err(&flipped, None).contains("fails its CRC check"));
    // Every truncation of either container fails cleanly.
    let legacy = legacy_file(&pkl, &[("0", 6, &w), ("1", 1, &b)]);
    for file in [&good, &legacy] {
        for n in 0..file.len() {
            assert!(parse(&file[..n], "cut.pth", None).is_err(), "{n} bytes");
        }
    }
}

/// A tiny deterministic generator, so the mutations below are the same on every run.
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn mutated_files_never_panic() {
    let (pkl, w) = views();
    let b = half(1.5);
    let mut state = 1;
    for _ in 0..20_000 {
        let mut p = pkl.clone();
        for _ in 0..1 + lcg(&mut state) % 4 {
            let at = lcg(&mut state) as usize % p.len();
            p[at] = lcg(&mut state) as u8;
        }
        let _ = parse(
            &legacy_file(&p, &[("0", 6, &w), ("1", 1, &b)]),
            "m.pth",
            None,
        );
    }
    // The whole archive too: its headers are the zip crate's to read, and none may panic.
    let zip = zip_file(&pkl, &[("data/0", &w), ("data/1", &b)]);
    for _ in 0..20_000 {
        let mut z = zip.clone();
        for _ in 0..1 + lcg(&mut state) % 4 {
            let at = lcg(&mut state) as usize % z.len();
            z[at] = lcg(&mut state) as u8;
        }
        let _ = parse(&z, "m.pth", None);
    }
}

mod hostile;
