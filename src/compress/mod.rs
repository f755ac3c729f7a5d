//! Compressors: how encoded bytes are packed into the stored object. Each takes bytes in and
//! writes the stored form to any `Write` (the part writer's chunk sink), and can say at any
//! moment how large the object would at most be if it ended now, so that a part can be
//! closed before it passes its size limit. Pure: no I/O beyond the writer given.
//!
//! - `none`: the bytes as they are.
//! - `gzip`: one gzip member, deflated on every core at once (pigz-style).
//! - `zstd`: one zstd frame, compressed by zstd's own worker threads.
//! - `zip`: one zip entry, deflated in parallel, or AES-256 encrypted through the `zip` crate.

mod gzip;
mod none;
mod zip;
mod zip_frame;
mod zstd;

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// One part's compression, from its first byte to its last.
pub trait Compressor: Send {
    /// Compresses `data` (output may follow later, when a block or job fills).
    fn write(&mut self, data: &[u8]) -> io::Result<()>;
    /// At least the stored size the object would have if it ended now: bytes written out plus
    /// everything held inside not yet out, counted uncompressed (with the little every format
    /// adds to data it cannot shrink). Cheap: asked before every row.
    fn stored_bound(&self) -> u64;
    /// Compresses everything held, so that [`Self::stored_bound`] is (nearly) exact. A stall
    /// (and, for zstd, the end of a block), so asked only when the bound reaches a limit.
    fn settle(&mut self) -> io::Result<()>;
    /// Writes what is left and the format's trailer.
    fn finish(self: Box<Self>) -> io::Result<()>;
}

/// How a part is packed: Devo's `format` parameter (`plain`, `gzip`, `zip`) plus `zstd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Zip,
    Gzip,
    Zstd,
    Plain,
}

impl Compression {
    pub const ALL: [Compression; 4] =
        [Compression::Plain, Compression::Gzip, Compression::Zstd, Compression::Zip];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name().eq_ignore_ascii_case(s))
    }

    /// The name as the API takes it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Zip => "zip",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Plain => "plain",
        }
    }

    /// The content type of the stored object; `None` for plain, whose type is the encoding's.
    pub fn content_type(self) -> Option<&'static str> {
        match self {
            Compression::Zip => Some("application/zip"),
            Compression::Gzip => Some("application/gzip"),
            Compression::Zstd => Some("application/zstd"),
            Compression::Plain => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Deflate level 0-9 (gzip and zip).
    pub deflate_level: u32,
    /// zstd level 1-19.
    pub zstd_level: i32,
    /// Zip only: AES-256 password of the entry.
    pub password: Option<Secret>,
    /// Zip only: the name of the one entry (`apiv2_<jobid>_<index>.csv`).
    pub entry_name: String,
}

/// A compressor of `compression` writing to `out`.
pub fn compressor<W: Write + Send + 'static>(
    compression: Compression,
    options: &Options,
    out: W,
) -> io::Result<Box<dyn Compressor>> {
    let level = options.deflate_level.min(9);
    Ok(match compression {
        Compression::Plain => Box::new(none::Plain::new(out)),
        Compression::Gzip => Box::new(gzip::ParallelDeflate::new(out, level, gzip::Framing::Gzip)?),
        Compression::Zstd => Box::new(zstd::Zstd::new(out, options.zstd_level)?),
        Compression::Zip => zip::compressor(out, level, &options.entry_name, options.password.as_ref())?,
    })
}

/// A writer that counts the bytes through it, readable while a compressor that owns the
/// writer (the `zip` crate's, zstd's) keeps it.
pub(crate) struct Counted<W> {
    inner: W,
    count: Arc<AtomicU64>,
}

impl<W: Write> Counted<W> {
    pub(crate) fn new(inner: W) -> (Self, Arc<AtomicU64>) {
        let count = Arc::new(AtomicU64::new(0));
        (Self { inner, count: count.clone() }, count)
    }
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What a compressor may add to `uncompressed` bytes it cannot shrink: stored blocks cost a
/// few bytes each (deflate 5 per 64 KiB, zstd 3 per 128 KiB), so one per KiB is generous.
pub(crate) fn worst_case(uncompressed: u64) -> u64 {
    uncompressed + uncompressed / 1024 + 64
}

#[cfg(test)]
mod tests;
