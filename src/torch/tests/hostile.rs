//! Files made to cost: a pickle that copies one value over and over, zip members that share
//! their bytes, end records that claim a huge directory or come by the thousand. Each is
//! refused quickly, with a reason, before it can take memory or time out of proportion.

use super::*;

/// `what`, called `reps` times on the same memoised arguments, each call a few bytes.
fn repeated_call(what: Vec<u8>, args: Vec<u8>, reps: usize) -> Vec<u8> {
    let mut body = [what, b"q\x00".to_vec(), args, b"q\x0100".to_vec()].concat();
    for _ in 0..reps {
        body.extend(b"h\x00h\x01R0");
    }
    body.push(b'N');
    pickle(&body)
}

/// Where the pickle machine stopped, and the MiB of objects it would go no further than.
fn stopped_at(e: &str) -> (usize, usize) {
    let number = |after: &str| {
        let rest = e.rsplit(after).next().unwrap();
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().unwrap()
    };
    (number("pickle byte "), number("more than "))
}

#[test]
fn copies_from_the_memo_are_charged() {
    // A tensor with a key of 256 bytes and 64 dimensions, about 1.3 KB to keep, made again
    // for 6 bytes: 100,000 times over would hold 130 MB from a pickle of 600 KB.
    let dims = [1; 64];
    let pid = tuple(&[
        s("storage"),
        g("torch", "FloatStorage"),
        s(&"7".repeat(256)),
        s("cpu"),
        int(1),
    ]);
    let hooks = [g("collections", "OrderedDict"), b")R".to_vec()].concat();
    let args = [pid, b"Q".to_vec(), int(0), ints(&dims), ints(&dims)];
    let args = tuple(&[args.concat(), vec![0x89], hooks]);
    let rebuild = g("torch._utils", "_rebuild_tensor_v2");
    let tensors = |reps| repeated_call(rebuild.clone(), args.clone(), reps);
    // torch.Size of 64 dimensions, about 1.6 KB each.
    let sizes = |reps| repeated_call(g("torch", "Size"), tuple(&[ints(&dims)]), reps);
    for (what, file) in [(tensors(100_000), "tensors"), (sizes(100_000), "sizes")] {
        let e = pickle::load(&what).err().unwrap();
        assert!(e.contains("MiB of objects from"), "{file}: {e}");
        // Refused part way, holding under 100 MB: the budget grows with the bytes read, the
        // copies six times faster or more.
        let (at, mib) = stopped_at(&e);
        assert!(at < what.len() * 3 / 4 && mib < 100, "{file}: {e}");
    }
    // A few thousand are nothing out of the way.
    assert!(pickle::load(&tensors(2_000)).is_ok());
    assert!(pickle::load(&sizes(2_000)).is_ok());
}

/// Each zip header's signature position.
fn headers(zip: &[u8], sig: &[u8; 4]) -> Vec<usize> {
    (0..zip.len().saturating_sub(3))
        .filter(|&i| &zip[i..i + 4] == sig)
        .collect()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

#[test]
fn members_that_share_bytes_are_refused() {
    // Three empty tensors, each on its own storage of 4,000 bytes: read honestly, each
    // storage is hashed once.
    let keys = ["0", "1", "2"];
    let pkl = pickle(&dict(
        &keys.map(|k| (k, tensor("FloatStorage", k, 1000, 0, &[0], &[1]))),
    ));
    let big = f32s(&[0.5; 1000]);
    let honest = zip_file(
        &pkl,
        &[("data/0", &big), ("data/1", &big), ("data/2", &big)],
    );
    assert_eq!(parse(&honest, "ok.pth", None).unwrap().tensors.len(), 3);
    // Every directory entry pointed at data/0's bytes: a thousand such entries would have
    // the one member hashed a thousand times.
    let mut shared = honest.clone();
    let entries = headers(&shared, b"PK\x01\x02");
    let name = |z: &[u8], at: usize| {
        let n = u16::from_le_bytes([z[at + 28], z[at + 29]]) as usize;
        String::from_utf8(z[at + 46..at + 46 + n].to_vec()).unwrap()
    };
    let first = *entries
        .iter()
        .find(|&&at| name(&shared, at) == "archive/data/0")
        .unwrap();
    let header = u32_at(&shared, first + 42).to_le_bytes();
    for &at in &entries {
        if name(&shared, at).starts_with("archive/data/") {
            shared[at + 42..at + 46].copy_from_slice(&header);
        }
    }
    let e = err(&shared, None);
    assert!(e.contains("member archive/data/1 shares its bytes"), "{e}");
}

/// A zip64 end record claiming `count` entries at `offset`, after `len` bytes of nothing.
fn zip64_claim(len: usize, count: u64, offset: u64) -> Vec<u8> {
    let mut f = b"PK\x03\x04".to_vec();
    f.resize(len, 0);
    let at = f.len() as u64;
    f.extend(b"PK\x06\x06");
    f.extend(44u64.to_le_bytes());
    f.extend([45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.extend(count.to_le_bytes());
    f.extend(count.to_le_bytes());
    f.extend(0u64.to_le_bytes());
    f.extend(offset.to_le_bytes());
    f.extend(b"PK\x06\x07\0\0\0\0");
    f.extend(at.to_le_bytes());
    f.extend(1u32.to_le_bytes());
    f.extend(b"PK\x05\x06\0\0\0\0");
    f.extend([0xff; 12]);
    f.extend([0, 0]);
    f
}

#[test]
fn directories_larger_than_their_file_are_refused() {
    // The zip crate takes room for every claimed entry up front, about 200 bytes each.
    let e = err(&zip64_claim(1 << 20, 100_000, 0), None);
    assert!(
        e.contains("claims 100000 entries at offset 0, more than fit"),
        "{e}"
    );
    // Room for 46 bytes an entry, but more entries than torch ever writes: the crate would
    // take about four bytes for every one of the file's.
    let n = (1 << 18) + 1;
    let e = err(&zip64_claim(47 * n as usize, n, n), None);
    assert!(e.contains("claims 262145 entries; torch writes"), "{e}");
    // A zip64 record somewhere other than where its locator says: the crate would search.
    let mut moved = zip64_claim(1000, 1, 0);
    let locator = headers(&moved, b"PK\x06\x07")[0];
    moved[locator + 8] -= 1;
    assert!(err(&moved, None).contains("not where its locator says"));
    // The plain end record of a real archive, its count raised to the most it can say.
    let (pkl, w) = views();
    let mut zip = zip_file(&pkl, &[("data/0", &w), ("data/1", &half(1.5))]);
    let end = headers(&zip, b"PK\x05\x06")[0];
    zip[end + 8..end + 10].copy_from_slice(&[0xff, 0xfe]);
    let e = err(&zip, None);
    assert!(e.contains("claims 65279 entries"), "{e}");
}

#[test]
fn end_records_by_the_thousand_are_refused() {
    // Each end record the zip crate finds but cannot use (here one entry, and no directory
    // anywhere) sends it scanning the file again: 1.7 MB of them took it 5 s, 17 MB would
    // take eight minutes.
    let mut f = b"PK\x03\x04".to_vec();
    for _ in 0..80_000 {
        f.extend(b"PK\x05\x06\0\0\0\0\x01\0\x01\0\0\0\0\0\0\0\0\0\0\0");
    }
    let t = std::time::Instant::now();
    assert!(err(&f, None).contains("more than 8 zip end records"));
    assert!(t.elapsed().as_secs() < 1, "{:?}", t.elapsed());
    // A few among the weights, as chance may put them there, are no harm.
    let (pkl, w) = views();
    let b = half(1.5);
    let sigs = |n| [&b"PK\x05\x06"[..], b"PK\x06\x06"].concat().repeat(n);
    let few = sigs(3);
    let zip = zip_file(&pkl, &[("data/0", &w), ("data/1", &b), ("junk", &few)]);
    check_views(&parse(&zip, "ok.pth", None).unwrap());
    let many = sigs(8);
    let zip = zip_file(&pkl, &[("data/0", &w), ("data/1", &b), ("junk", &many)]);
    assert!(err(&zip, None).contains("more than 8 zip end records"));
}
