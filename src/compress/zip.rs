//! The zip compressor: one entry per part. Without a password the entry is deflated on every
//! core by the parallel deflater and framed by [`super::zip_frame`]; with one it is AES-256
//! encrypted by the `zip` crate (one core).

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use zip::write::{SimpleFileOptions, StreamWriter};
use zip::{AesMode, CompressionMethod, ZipWriter};

use super::gzip::{Framing, ParallelDeflate};
use super::zip_frame::ZipEntry;
use super::{Compressor, Counted, worst_case};
use crate::secret::Secret;

pub fn compressor<W: Write + Send + 'static>(
    out: W,
    level: u32,
    entry_name: &str,
    password: Option<&Secret>,
) -> io::Result<Box<dyn Compressor>> {
    Ok(match password {
        None => {
            let entry = ZipEntry::new(entry_name, zip_time_now());
            Box::new(ParallelDeflate::new(out, level, Framing::Zip(entry))?)
        }
        Some(password) => Box::new(AesZip::new(out, level, entry_name, password)?),
    })
}

/// An AES-256 encrypted entry, through the `zip` crate.
struct AesZip<W: Write> {
    zip: ZipWriter<StreamWriter<Counted<W>>>,
    written: Arc<AtomicU64>,
    /// Bytes taken since the deflater was last flushed: it may hold all of them.
    unflushed: u64,
}

impl<W: Write> AesZip<W> {
    fn new(out: W, level: u32, entry_name: &str, password: &Secret) -> io::Result<Self> {
        let (out, written) = Counted::new(out);
        let mut zip = ZipWriter::new_stream(out);
        let file = SimpleFileOptions::default()
            .last_modified_time(zip_time_now())
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(level as i64))
            .large_file(true)
            .with_aes_encryption(AesMode::Aes256, password.expose());
        zip.start_file(entry_name, file).map_err(io::Error::other)?;
        Ok(Self { zip, written, unflushed: 0 })
    }
}

impl<W: Write + Send> Compressor for AesZip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.zip.write_all(data)?;
        self.unflushed += data.len() as u64;
        Ok(())
    }

    fn stored_bound(&self) -> u64 {
        self.written.load(Ordering::Relaxed) + worst_case(self.unflushed)
    }

    /// A sync flush of the deflater: what it held is out, so the size is exact.
    fn settle(&mut self) -> io::Result<()> {
        self.zip.flush()?;
        self.unflushed = 0;
        Ok(())
    }

    fn finish(self: Box<Self>) -> io::Result<()> {
        self.zip.finish().map_err(io::Error::other)?;
        Ok(())
    }
}

/// Now (UTC), as a zip entry's time; 1980-01-01, zip's earliest, if the clock is off.
fn zip_time_now() -> zip::DateTime {
    use chrono::{Datelike as _, Timelike as _};
    let now = chrono::Utc::now();
    zip::DateTime::from_date_and_time(
        now.year().try_into().unwrap_or(1980),
        now.month() as u8,
        now.day() as u8,
        now.hour() as u8,
        now.minute() as u8,
        now.second() as u8,
    )
    .unwrap_or_default()
}
