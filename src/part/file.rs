//! One part file being written: encoded rows in, the compressor's output out as
//! upload-sized chunks. The part writer holds one compressor (any of [`crate::compress`]) and
//! the chunk sink it writes to; the rows come from one encoder (any of [`crate::encode`]),
//! whose header starts the part and whose trailer ends it. Synchronous and CPU-bound: the
//! worker runs it on a blocking thread.

use std::io;

use bytes::Bytes;

use super::sink::ChunkSink;
use crate::compress::{self, Compression, Compressor};
use crate::encode::Encoding;
use crate::encode::parquet::ParquetCompression;
use crate::secret::Secret;

/// Rows are handed to the compressor in blocks of about this size (fewer, larger calls).
const PENDING_MAX: usize = 32 * 1024;

#[derive(Debug, Clone)]
pub struct PartOptions {
    /// How rows are written (`file.format`): names the part and picks the job's encoder.
    pub encoding: Encoding,
    pub compression: Compression,
    /// Parquet only: the codec of the pages inside the file (`parquet.compression`).
    pub parquet_compression: ParquetCompression,
    /// Deflate level 0-9 (gzip and zip).
    pub level: u32,
    /// zstd level 1-19.
    pub zstd_level: i32,
    /// Zip only: AES-256 password of the entry.
    pub password: Option<Secret>,
    /// Zip only: the name of the one entry (`apiv2_<jobid>_<index>.csv`).
    pub entry_name: String,
    /// Base size of the chunks handed to the uploader (the S3 upload part size).
    pub chunk_size: usize,
    /// Row encodings: every part starts with the encoder's header (CSV's column names).
    /// `false` only for an async export asked for without one (`includeHeader: false`).
    pub header: bool,
    /// Parquet only: a row group is closed once its encoded size reaches this.
    pub row_group_bytes: u64,
}

impl PartOptions {
    /// CSV with `compression` at the default levels (deflate 6, zstd 3), upload chunks of 8 MiB.
    pub fn new(compression: Compression) -> Self {
        Self {
            encoding: Encoding::Csv,
            compression,
            parquet_compression: ParquetCompression::default(),
            level: 6,
            zstd_level: 3,
            password: None,
            entry_name: String::new(),
            chunk_size: 8 << 20,
            header: true,
            row_group_bytes: crate::encode::parquet::ROW_GROUP_BYTES,
        }
    }
}

/// A part after its last row.
#[derive(Debug)]
pub struct FinishedPart {
    /// The chunks not yet taken by [`PartFile::take_chunks`], the last one possibly short.
    pub chunks: Vec<Bytes>,
    /// Size of the whole stored object.
    pub bytes: u64,
    /// SHA-256 of the whole stored object, hex.
    pub sha256: String,
    pub rows: u64,
    /// Size of the encoded rows inside (CSV, JSON Lines), header included.
    pub encoded_bytes: u64,
    /// Parquet only: the uncompressed size of each row group, in file order (empty for the
    /// row encodings).
    pub row_group_sizes: Vec<u64>,
}

pub struct PartFile {
    compressor: Box<dyn Compressor>,
    sink: ChunkSink,
    pending: Vec<u8>,
    rows: u64,
    encoded_bytes: u64,
}

impl PartFile {
    /// Starts a part with `header` (the encoder's) as its first bytes.
    pub fn new(options: &PartOptions, header: &[u8]) -> io::Result<Self> {
        let sink = ChunkSink::new(options.chunk_size);
        let compress_options = compress::Options {
            deflate_level: options.level,
            zstd_level: options.zstd_level,
            password: options.password.clone(),
            entry_name: options.entry_name.clone(),
        };
        let compressor = compress::compressor(options.compression, &compress_options, sink.clone())?;
        let mut part = Self {
            compressor,
            sink,
            pending: Vec::with_capacity(PENDING_MAX * 2),
            rows: 0,
            encoded_bytes: 0,
        };
        part.pending.extend_from_slice(header);
        Ok(part)
    }

    /// Appends one complete encoded row (with its line end).
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
            self.compressor.write(&self.pending)?;
            self.encoded_bytes += self.pending.len() as u64;
            self.pending.clear();
        }
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// At least the stored size the part would have if it ended now: the compressor's bound
    /// plus the rows not yet handed to it, counted whole. Cheap; [`Self::settled_size`] is
    /// exact.
    pub fn stored_bound(&self) -> u64 {
        self.compressor.stored_bound() + compress::worst_case(self.pending.len() as u64)
    }

    /// The stored size with nothing left uncompressed: the rows waiting are handed to the
    /// compressor and it compresses everything it holds. Costs a pipeline stall, so callers
    /// ask only when [`Self::stored_bound`] reaches a limit; a part is then decided on its
    /// real size, never ended early because compression lagged, and never over the limit
    /// because a guess at the ratio was wrong.
    pub fn settled_size(&mut self) -> io::Result<u64> {
        self.flush_pending()?;
        self.compressor.settle()?;
        Ok(self.compressor.stored_bound())
    }

    /// Full chunks ready for upload.
    pub fn take_chunks(&mut self) -> Vec<Bytes> {
        self.sink.take_ready()
    }

    /// Ends the part with `trailer` (the encoder's).
    pub fn finish(mut self, trailer: &[u8]) -> io::Result<FinishedPart> {
        self.pending.extend_from_slice(trailer);
        self.flush_pending()?;
        self.compressor.finish()?;
        let chunks = self.sink.take_all();
        Ok(FinishedPart {
            chunks,
            bytes: self.sink.written(),
            sha256: self.sink.sha256(),
            rows: self.rows,
            encoded_bytes: self.encoded_bytes,
            row_group_sizes: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn options(compression: Compression, password: Option<&str>) -> PartOptions {
        PartOptions {
            password: password.map(Secret::new),
            entry_name: "apiv2_x_001.csv".into(),
            chunk_size: 1024,
            ..PartOptions::new(compression)
        }
    }

    fn encode(opts: &PartOptions, rows: usize) -> (Vec<u8>, String) {
        let mut enc = PartFile::new(opts, b"a,b\n").unwrap();
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
        let done = enc.finish(b"").unwrap();
        for c in done.chunks {
            out.extend_from_slice(&c);
        }
        assert_eq!(done.bytes, out.len() as u64);
        assert_eq!(done.rows, rows as u64);
        (out, csv)
    }

    #[test]
    fn gzip_round_trips() {
        let (bytes, csv) = encode(&options(Compression::Gzip, None), 5000);
        let mut back = String::new();
        flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_string(&mut back).unwrap();
        assert_eq!(back, csv);
    }

    #[test]
    fn plain_is_the_csv() {
        let (bytes, csv) = encode(&options(Compression::Plain, None), 300);
        assert_eq!(String::from_utf8(bytes).unwrap(), csv);
    }

    #[test]
    fn zip_has_one_entry_and_aes_needs_the_password() {
        for password in [None, Some("pa55word")] {
            let (bytes, csv) = encode(&options(Compression::Zip, password), 5000);
            let mut archive = zip::ZipArchive::new(io::Cursor::new(&bytes)).unwrap();
            assert_eq!(archive.len(), 1);
            let mut back = String::new();
            match password {
                None => archive.by_index(0).unwrap().read_to_string(&mut back).unwrap(),
                Some(p) => {
                    assert!(
                        archive.by_index(0).is_err(),
                        "an encrypted entry must not open without its password"
                    );
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
        let (bytes, csv) = encode(&options(Compression::Zip, None), 200_000);
        assert!(csv.len() > 4 * 128 * 1024);
        let path = std::env::temp_dir().join(format!("forwarder-zip-{}.zip", uuid::Uuid::new_v4()));
        std::fs::write(&path, &bytes).unwrap();
        // Python's zipfile checks the CRC and both sizes as it reads.
        let read = "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.namelist() == ['apiv2_x_001.csv'], z.namelist()\nassert z.testzip() is None\nsys.stdout.buffer.write(z.read('apiv2_x_001.csv'))";
        let out = std::process::Command::new("python3")
            .args(["-c", read])
            .arg(&path)
            .output()
            .expect("python3 runs");
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
