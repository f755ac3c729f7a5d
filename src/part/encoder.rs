//! One part file being written: CSV rows in, compressed (gzip, zip, optionally AES-256
//! encrypted, or plain) upload-sized chunks out. Synchronous and CPU-bound: the worker runs it
//! on a blocking thread.

use std::io::{self, Write};

use bytes::Bytes;
use zip::write::{SimpleFileOptions, StreamWriter};
use zip::{AesMode, CompressionMethod, ZipWriter};

use super::pgzip::{Framing, ParallelDeflate};
use super::zip_frame::ZipEntry;
use super::sink::ChunkSink;
use crate::job::Format;
use crate::secret::Secret;

/// Rows are handed to the compressor in blocks of about this size (fewer, larger calls).
const PENDING_MAX: usize = 32 * 1024;

#[derive(Debug, Clone)]
pub struct PartOptions {
    pub format: Format,
    /// Deflate level 0-9 (gzip and zip).
    pub level: u32,
    /// Zip only: AES-256 password of the entry.
    pub password: Option<Secret>,
    /// Zip only: the name of the one entry (`apiv2_<jobid>_<index>.csv`).
    pub entry_name: String,
    /// Base size of the chunks handed to the uploader (the S3 upload part size).
    pub chunk_size: usize,
}

enum Compressor {
    Plain(ChunkSink),
    /// gzip, or zip without a password: deflated on several cores at once (see
    /// [`ParallelDeflate`]).
    Parallel(Box<ParallelDeflate>),
    /// An AES-256 encrypted zip, through the `zip` crate (one core).
    Zip(Box<ZipWriter<StreamWriter<ChunkSink>>>),
}

impl Compressor {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.write_all(data),
            Compressor::Parallel(w) => w.write_all(data),
            Compressor::Zip(w) => w.write_all(data),
        }
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

/// A part after its last row.
#[derive(Debug)]
pub struct FinishedPart {
    /// The chunks not yet taken by [`PartEncoder::take_chunks`], the last one possibly short.
    pub chunks: Vec<Bytes>,
    /// Size of the whole stored object.
    pub bytes: u64,
    pub rows: u64,
    /// Size of the CSV inside.
    pub csv_bytes: u64,
}

pub struct PartEncoder {
    compressor: Compressor,
    sink: ChunkSink,
    pending: Vec<u8>,
    rows: u64,
    csv_bytes: u64,
}

impl PartEncoder {
    /// Starts a part with `header` as its first line.
    pub fn new(options: &PartOptions, header: &[u8]) -> io::Result<Self> {
        let sink = ChunkSink::new(options.chunk_size);
        let level = options.level.min(9);
        let compressor = match options.format {
            Format::Plain => Compressor::Plain(sink.clone()),
            Format::Gzip => Compressor::Parallel(Box::new(ParallelDeflate::new(sink.clone(), level, Framing::Gzip)?)),
            Format::Zip => match &options.password {
                None => {
                    let entry = ZipEntry::new(&options.entry_name, zip_time_now());
                    Compressor::Parallel(Box::new(ParallelDeflate::new(sink.clone(), level, Framing::Zip(entry))?))
                }
                Some(password) => {
                    let mut zip = ZipWriter::new_stream(sink.clone());
                    let file = SimpleFileOptions::default()
                        .last_modified_time(zip_time_now())
                        .compression_method(CompressionMethod::Deflated)
                        .compression_level(Some(level as i64))
                        .large_file(true)
                        .with_aes_encryption(AesMode::Aes256, password.expose());
                    zip.start_file(options.entry_name.as_str(), file).map_err(io::Error::other)?;
                    Compressor::Zip(Box::new(zip))
                }
            },
        };
        let mut encoder = Self { compressor, sink, pending: Vec::with_capacity(PENDING_MAX * 2), rows: 0, csv_bytes: 0 };
        encoder.pending.extend_from_slice(header);
        Ok(encoder)
    }

    /// Appends one complete CSV row (with its line end).
    pub fn write_row(&mut self, row: &[u8]) -> io::Result<()> {
        self.rows += 1;
        self.pending.extend_from_slice(row);
        if self.pending.len() >= PENDING_MAX {
            self.flush_pending()?;
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.compressor.write_all(&self.pending)?;
            self.csv_bytes += self.pending.len() as u64;
            self.pending.clear();
        }
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// At least the stored size the part would have if it ended now: compressed output plus
    /// everything not yet compressed, counted whole. Cheap; [`Self::settled_size`] is exact.
    pub fn stored_bound(&self) -> u64 {
        let compressed = match &self.compressor {
            Compressor::Parallel(p) => p.stored_bound(),
            _ => self.sink.written(),
        };
        compressed + self.pending.len() as u64
    }

    /// The stored size with nothing left uncompressed: the rows waiting are handed to the
    /// compressor and every block in flight is compressed. Costs a pipeline stall, so callers
    /// ask only when [`Self::stored_bound`] reaches a limit; a part is then decided on its
    /// real size, never ended early because compression lagged, and never over the limit
    /// because a guess at the ratio was wrong.
    pub fn settled_size(&mut self) -> io::Result<u64> {
        self.flush_pending()?;
        if let Compressor::Parallel(p) = &mut self.compressor {
            p.settle()?;
        }
        Ok(self.stored_bound())
    }

    /// Full chunks ready for upload.
    pub fn take_chunks(&mut self) -> Vec<Bytes> {
        self.sink.take_ready()
    }

    pub fn finish(mut self) -> io::Result<FinishedPart> {
        self.flush_pending()?;
        match self.compressor {
            Compressor::Plain(_) => {}
            Compressor::Parallel(w) => {
                w.finish()?;
            }
            Compressor::Zip(w) => {
                w.finish().map_err(io::Error::other)?;
            }
        }
        let mut chunks = self.sink.take_ready();
        let rest = self.sink.take_rest();
        if !rest.is_empty() {
            chunks.push(rest);
        }
        Ok(FinishedPart { chunks, bytes: self.sink.written(), rows: self.rows, csv_bytes: self.csv_bytes })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn options(format: Format, password: Option<&str>) -> PartOptions {
        PartOptions {
            format,
            level: 6,
            password: password.map(Secret::new),
            entry_name: "apiv2_x_001.csv".into(),
            chunk_size: 1024,
        }
    }

    fn encode(opts: &PartOptions, rows: usize) -> (Vec<u8>, String) {
        let mut enc = PartEncoder::new(opts, b"a,b\n").unwrap();
        let mut csv = String::from("a,b\n");
        let mut out = Vec::new();
        for i in 0..rows {
            let row = format!("{i},\"x,{i}\"\n");
            csv.push_str(&row);
            enc.write_row(row.as_bytes()).unwrap();
            for c in enc.take_chunks() {
                assert_eq!(c.len(), 1024);
                out.extend_from_slice(&c);
            }
        }
        let done = enc.finish().unwrap();
        for c in done.chunks {
            out.extend_from_slice(&c);
        }
        assert_eq!(done.bytes, out.len() as u64);
        assert_eq!(done.rows, rows as u64);
        (out, csv)
    }

    #[test]
    fn gzip_round_trips() {
        let (bytes, csv) = encode(&options(Format::Gzip, None), 5000);
        let mut back = String::new();
        flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_string(&mut back).unwrap();
        assert_eq!(back, csv);
    }

    #[test]
    fn plain_is_the_csv() {
        let (bytes, csv) = encode(&options(Format::Plain, None), 300);
        assert_eq!(String::from_utf8(bytes).unwrap(), csv);
    }

    #[test]
    fn zip_has_one_entry_and_aes_needs_the_password() {
        for password in [None, Some("pa55word")] {
            let (bytes, csv) = encode(&options(Format::Zip, password), 5000);
            let mut archive = zip::ZipArchive::new(io::Cursor::new(&bytes)).unwrap();
            assert_eq!(archive.len(), 1);
            let mut back = String::new();
            match password {
                None => archive.by_index(0).unwrap().read_to_string(&mut back).unwrap(),
                Some(p) => {
                    assert!(archive.by_index(0).is_err(), "an encrypted entry must not open without its password");
                    assert!(archive.by_index_decrypt(0, b"wrong").is_err());
                    archive.by_index_decrypt(0, p.as_bytes()).unwrap().read_to_string(&mut back).unwrap()
                }
            };
            assert_eq!(back, csv);
            let entry = archive.by_index_raw(0).unwrap();
            assert_eq!(entry.name().unwrap(), "apiv2_x_001.csv");
            let written = entry.last_modified().unwrap();
            assert!(written.year() >= 2026, "dated when written, not 1980: {written:?}");
        }
    }

    #[test]
    fn a_zip_from_the_parallel_deflater_opens_in_python_and_7zip() {
        // Several blocks (128 KiB each), so that the entry is many deflate blocks joined.
        let (bytes, csv) = encode(&options(Format::Zip, None), 200_000);
        assert!(csv.len() > 4 * 128 * 1024);
        let path = std::env::temp_dir().join(format!("forwarder-zip-{}.zip", uuid::Uuid::new_v4()));
        std::fs::write(&path, &bytes).unwrap();
        // Python's zipfile checks the CRC and both sizes as it reads.
        let read = "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.namelist() == ['apiv2_x_001.csv'], z.namelist()\nassert z.testzip() is None\nsys.stdout.buffer.write(z.read('apiv2_x_001.csv'))";
        let out = std::process::Command::new("python3").args(["-c", read]).arg(&path).output().expect("python3 runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout == csv.as_bytes(), "Python reads back the CSV");
        // 7-Zip, which scripts/test.sh installs, tests the archive too.
        if let Ok(out) = std::process::Command::new("7z").arg("t").arg(&path).output() {
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success() && said.contains("Everything is Ok"), "{said}");
        }
        std::fs::remove_file(&path).unwrap();
    }
}
