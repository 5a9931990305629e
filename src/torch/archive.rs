//! The zip container of torch ≥ 1.6: `<archive>/data.pkl` holds the object graph and
//! `<archive>/data/<key>` each storage's raw bytes. Torch stores members uncompressed, so every
//! member is a slice of the file: nothing is copied, and only the storages a caller asks for
//! are touched.

use super::object::Pickle;
use super::pickle;
use std::io::Cursor;
use zip::{CompressionMethod, ZipArchive};

/// `data.pkl` directly inside the archive's one top folder (or, leniently, at its root).
fn is_top_level_pickle(name: &str) -> bool {
    match name.strip_suffix("data.pkl") {
        Some("") => true,
        Some(dir) => dir.find('/') == Some(dir.len() - 1),
        None => false,
    }
}

pub struct Archive<'a> {
    bytes: &'a [u8],
    zip: ZipArchive<Cursor<&'a [u8]>>,
    /// The top folder every member lives in (torch names it after the file it saved to).
    prefix: String,
}

impl<'a> Archive<'a> {
    pub fn open(bytes: &'a [u8]) -> Result<(Pickle, Archive<'a>), String> {
        let zip = ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| format!("not a readable zip archive ({e}); is the file truncated?"))?;
        let pkl = zip
            .file_names()
            .find(|n| is_top_level_pickle(n))
            .ok_or("a zip archive without a data.pkl, so not a torch checkpoint")?
            .to_string();
        let prefix = pkl.strip_suffix("data.pkl").unwrap_or_default().to_string();
        let mut a = Archive { bytes, zip, prefix };
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
        if crc32fast::hash(data) != f.crc32() {
            return Err(format!(
                "member {name} fails its CRC check (the file is damaged)"
            ));
        }
        Ok(data)
    }
}
