//! The zip container of torch ≥ 1.6: `<archive>/data.pkl` holds the object graph and
//! `<archive>/data/<key>` each storage's raw bytes. Torch stores members uncompressed, so every
//! member is a slice of the file: nothing is copied, and only the storages a caller asks for
//! are touched.
//!
//! The zip crate trusts an archive's end records more than a hostile file deserves: it takes
//! room for as many entries as the end record claims, and when a record does not check out it
//! searches the file backwards for another, scanning forwards again for each. So before the
//! crate sees a file, its end records are counted and the one the crate reads first is held to
//! what the file can hold. Nor may two members share bytes, so no byte is hashed twice.

use super::object::Pickle;
use super::pickle;
use std::collections::BTreeMap;
use std::io::Cursor;
use zip::{CompressionMethod, ZipArchive};

/// The end of central directory record, the zip64 one, and the locator of the zip64 one.
const END: &[u8; 4] = b"PK\x05\x06";
const END64: &[u8; 4] = b"PK\x06\x06";
const LOCATOR64: &[u8; 4] = b"PK\x06\x07";
/// The fixed part of a central directory entry; its name and fields follow.
const ENTRY: u64 = 46;
/// torch writes a member per storage and five more; no model has a quarter million storages.
const MAX_ENTRIES: u64 = 1 << 18;
/// An archive has one of each end record. A few more may fall among the weights by chance (a
/// signature is four given bytes), but not many, and each costs the zip crate a scan.
const MAX_ENDS: usize = 8;

/// `data.pkl` directly inside the archive's one top folder (or, leniently, at its root).
fn is_top_level_pickle(name: &str) -> bool {
    match name.strip_suffix("data.pkl") {
        Some("") => true,
        Some(dir) => dir.find('/') == Some(dir.len() - 1),
        None => false,
    }
}

/// Where the two end record signatures occur, in file order. Eight bytes at a time, as a file
/// is mostly weights: only a word that holds a `K` can hold a signature's second byte.
fn end_records(h: &[u8]) -> Result<(Vec<u64>, Vec<u64>), String> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    let holds_k = |c: &[u8]| match <[u8; 8]>::try_from(c) {
        // Whether x has a zero byte (exactly; which one it flags may be wrong).
        Ok(w) => {
            let x = u64::from_ne_bytes(w) ^ (ONES * u64::from(b'K'));
            x.wrapping_sub(ONES) & !x & (ONES << 7) != 0
        }
        Err(_) => true,
    };
    let (mut ends, mut ends64) = (Vec::new(), Vec::new());
    let candidates = (h.chunks(8).enumerate())
        .filter(|(_, c)| holds_k(c))
        .flat_map(|(i, c)| i * 8..i * 8 + c.len())
        .filter_map(|k| k.checked_sub(1));
    for at in candidates {
        let found = match h.get(at..at + 4) {
            Some(s) if s == END => &mut ends,
            Some(s) if s == END64 => &mut ends64,
            _ => continue,
        };
        if found.len() == MAX_ENDS {
            return Err(format!(
                "more than {MAX_ENDS} zip end records; an archive has one (a crafted file?)"
            ));
        }
        found.push(at as u64);
    }
    Ok((ends, ends64))
}

/// The little-endian number of `n` bytes at `at`, if the file has them.
fn le(h: &[u8], at: u64, n: usize) -> Option<u64> {
    let at = usize::try_from(at).ok()?;
    let b = h.get(at..at.checked_add(n)?)?;
    Some(b.iter().rev().fold(0, |a, &x| a << 8 | u64::from(x)))
}

/// Refuse what would make `ZipArchive::new` search or allocate without bound: many end
/// records, or a first one that claims more entries than the file has room for.
fn check_ends(h: &[u8]) -> Result<(), String> {
    let (ends, ends64) = end_records(h)?;
    let len = h.len() as u64;
    // As the crate does: the last record whose comment ends inside the file comes first.
    let end = (ends.iter().rev().copied())
        .find(|&at| le(h, at + 20, 2).is_some_and(|c| at + 22 + c <= len))
        .ok_or(
            "not a readable zip archive (no end of central directory); is the file truncated?",
        )?;
    let field = |at: u64, n| le(h, at, n).ok_or("a zip64 end record past the end of the file");
    let (mut count, mut offset, mut before) = (field(end + 8, 2)?, field(end + 16, 4)?, end);
    let locator = end.checked_sub(20);
    let zip64 = field(end + 10, 2)? == 0xffff || offset == 0xffff_ffff;
    let is_locator = |l: u64| h.get(l as usize..l as usize + 4) == Some(LOCATOR64);
    if let Some(locator) = locator.filter(|&l| zip64 && is_locator(l)) {
        // The crate would search for the zip64 record if it is not where the locator says.
        let at = field(locator + 8, 8)?;
        if !ends64.contains(&at) || at.saturating_add(56) > locator {
            return Err("the zip64 end record is not where its locator says".into());
        }
        (count, offset, before) = (field(at + 32, 8)?, field(at + 48, 8)?, at);
    }
    if count > MAX_ENTRIES {
        return Err(format!(
            "the zip directory claims {count} entries; torch writes one a storage, and no \
             model has more than {MAX_ENTRIES} (a crafted file?)"
        ));
    }
    let room = before.checked_sub(offset);
    if count > 0 && room.is_none_or(|r| count * ENTRY > r) {
        return Err(format!(
            "the zip directory claims {count} entries at offset {offset}, more than fit \
             before its end record at {before} (a crafted file?)"
        ));
    }
    Ok(())
}

pub struct Archive<'a> {
    bytes: &'a [u8],
    zip: ZipArchive<Cursor<&'a [u8]>>,
    /// The top folder every member lives in (torch names it after the file it saved to).
    prefix: String,
    /// The bytes of each member read so far, start to end: members never overlap in what
    /// torch writes, and if they could, one big member named many times would be hashed as
    /// many times.
    read: BTreeMap<u64, u64>,
}

impl<'a> Archive<'a> {
    pub fn open(bytes: &'a [u8]) -> Result<(Pickle, Archive<'a>), String> {
        check_ends(bytes)?;
        let zip = ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| format!("not a readable zip archive ({e}); is the file truncated?"))?;
        let pkl = zip
            .file_names()
            .find(|n| is_top_level_pickle(n))
            .ok_or("a zip archive without a data.pkl, so not a torch checkpoint")?
            .to_string();
        let prefix = pkl.strip_suffix("data.pkl").unwrap_or_default().to_string();
        let read = BTreeMap::new();
        let mut a = Archive {
            bytes,
            zip,
            prefix,
            read,
        };
        let byteorder = format!("{}byteorder", a.prefix);
        if a.zip.index_for_name(&byteorder).is_some() {
            let order = a.member(&byteorder)?;
            if order != b"little" {
                return Err(format!(
                    "{byteorder} says {:?}; only little-endian checkpoints are read",
                    String::from_utf8_lossy(&order[..order.len().min(16)])
                ));
            }
        }
        let p = pickle::load(a.member(&pkl)?).map_err(|e| format!("{pkl}: {e}"))?;
        Ok((p, a))
    }

    /// The bytes of the storage with this key.
    pub fn storage(&mut self, key: &str) -> Result<&'a [u8], String> {
        self.member(&format!("{}data/{key}", self.prefix))
    }

    fn member(&mut self, name: &str) -> Result<&'a [u8], String> {
        let i = self
            .zip
            .index_for_name(name)
            .ok_or_else(|| format!("the archive has no member {name}"))?;
        // Raw: the method is ours to judge, and a stored member is its own bytes.
        let f = self
            .zip
            .by_index_raw(i)
            .map_err(|e| format!("member {name}: {e}"))?;
        if f.compression() != CompressionMethod::Stored {
            return Err(format!(
                "member {name} is compressed ({:?}); torch.save writes stored members, \
                 so load and save the file again with torch",
                f.compression()
            ));
        }
        let start = f
            .data_start()
            .ok_or_else(|| format!("member {name}: no data"))?;
        let end = start.checked_add(f.compressed_size());
        let data = end
            .and_then(|end| {
                self.bytes
                    .get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
            })
            .ok_or_else(|| format!("member {name} runs past the end of the file (truncated?)"))?;
        let end = start + data.len() as u64;
        // The spans read are disjoint, so only the last one to start before this one ends can
        // overlap it. An empty member costs nothing to check, wherever it lies.
        if let Some((_, &prev_end)) = self.read.range(..end).next_back() {
            if prev_end > start && !data.is_empty() {
                return Err(format!(
                    "member {name} shares its bytes with another member; torch never writes \
                     that (a crafted file?)"
                ));
            }
        }
        if crc32fast::hash(data) != f.crc32() {
            return Err(format!(
                "member {name} fails its CRC check (the file is damaged)"
            ));
        }
        if !data.is_empty() {
            self.read.insert(start, end);
        }
        Ok(data)
    }
}
