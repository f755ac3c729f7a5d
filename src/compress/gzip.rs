//! Parallel deflate, pigz-style: the input is cut into blocks that are deflated on several
//! cores at once, each primed with the 32 KiB before it (so the ratio stays that of one
//! stream), ended with a sync flush so that they join into one deflate stream, whose CRC-32
//! is combined from the blocks'. Framed as one gzip member, or as the one entry of a zip file
//! ([`ZipEntry`]): every gzip or zip reader reads it.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc;

use flate2::{Compress, Compression, FlushCompress, Status};

use super::Compressor;
use super::zip_frame::ZipEntry;

/// Input per block (pigz uses 128 KiB).
const BLOCK: usize = 128 * 1024;
/// Deflate's window: how much of the previous block primes the next.
const WINDOW: usize = 32 * 1024;

/// gzip header: deflate, no name, no time, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

struct Compressed {
    seq: u64,
    data: io::Result<Vec<u8>>,
    crc: crc32fast::Hasher,
    input: usize,
}

/// What wraps the deflate stream.
pub enum Framing {
    Gzip,
    Zip(ZipEntry),
}

pub struct ParallelDeflate<W> {
    out: W,
    /// Bytes written to `out`.
    written: u64,
    framing: Framing,
    /// Bytes written before the deflate stream.
    header_len: u64,
    level: u32,
    block: Vec<u8>,
    /// The tail of the last block sent, to prime the next.
    window: Vec<u8>,
    next_seq: u64,
    next_out: u64,
    done: BTreeMap<u64, Compressed>,
    tx: mpsc::Sender<Compressed>,
    rx: mpsc::Receiver<Compressed>,
    max_in_flight: u64,
    in_flight_input: usize,
    crc: crc32fast::Hasher,
    total_in: u64,
}

impl<W: Write> ParallelDeflate<W> {
    pub fn new(mut out: W, level: u32, framing: Framing) -> io::Result<Self> {
        let header = match &framing {
            Framing::Gzip => HEADER.to_vec(),
            Framing::Zip(entry) => entry.local_header(),
        };
        out.write_all(&header)?;
        let (tx, rx) = mpsc::channel();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
        Ok(Self {
            out,
            written: header.len() as u64,
            framing,
            header_len: header.len() as u64,
            level: level.min(9),
            block: Vec::with_capacity(BLOCK),
            window: Vec::new(),
            next_seq: 0,
            next_out: 0,
            done: BTreeMap::new(),
            tx,
            rx,
            // Enough for compression to run on while the encoder waits; capped so that memory
            // and the stored-size estimate stay tight on many cores.
            max_in_flight: (threads * 8).min(32),
            in_flight_input: 0,
            crc: crc32fast::Hasher::new(),
            total_in: 0,
        })
    }

    fn write_out(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }

    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let take = (BLOCK - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == BLOCK {
                self.send_block(false)?;
            }
        }
        self.collect(false)
    }

    /// At least the stored size once what is written so far is compressed: the compressed
    /// bytes plus the input not yet compressed, counted whole (deflate adds only a few bytes
    /// per block even to data it cannot shrink). Exact after [`Self::settle`].
    pub fn stored_bound(&self) -> u64 {
        self.written + super::worst_case((self.in_flight_input + self.block.len()) as u64)
    }

    /// Compresses the partial block now and waits for every block in flight, so that
    /// [`Self::stored_bound`] is exact: asked only when the bound reaches a part's limit.
    pub fn settle(&mut self) -> io::Result<()> {
        if !self.block.is_empty() {
            self.send_block(false)?;
        }
        while self.next_out < self.next_seq {
            self.collect(true)?;
        }
        Ok(())
    }

    fn send_block(&mut self, last: bool) -> io::Result<()> {
        let input = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        // The next block is primed with the 32 KiB before it, across a short block too.
        let dictionary = std::mem::take(&mut self.window);
        let keep = WINDOW.saturating_sub(input.len()).min(dictionary.len());
        self.window =
            [&dictionary[dictionary.len() - keep..], &input[input.len().saturating_sub(WINDOW)..]].concat();
        let (seq, level, tx) = (self.next_seq, self.level, self.tx.clone());
        self.next_seq += 1;
        self.in_flight_input += input.len();
        rayon::spawn(move || {
            let mut crc = crc32fast::Hasher::new();
            crc.update(&input);
            let data = deflate_block(level, &dictionary, &input, last);
            let _ = tx.send(Compressed { seq, data, crc, input: input.len() });
        });
        // Bounded memory: wait for the oldest block when too many are in flight.
        while self.next_seq - self.next_out > self.max_in_flight {
            self.collect(true)?;
        }
        Ok(())
    }

    /// Writes finished blocks in order; with `wait`, waits for at least one.
    fn collect(&mut self, wait: bool) -> io::Result<()> {
        if wait {
            let c = self.rx.recv().map_err(|_| io::Error::other("a compression thread stopped"))?;
            self.done.insert(c.seq, c);
        }
        while let Ok(c) = self.rx.try_recv() {
            self.done.insert(c.seq, c);
        }
        while let Some(c) = self.done.remove(&self.next_out) {
            let data = c.data?;
            self.write_out(&data)?;
            self.crc.combine(&c.crc);
            self.total_in += c.input as u64;
            self.in_flight_input -= c.input;
            self.next_out += 1;
        }
        Ok(())
    }

    /// Compresses what is left, waits for every block, writes the trailer.
    pub fn finish(mut self) -> io::Result<W> {
        self.send_block(true)?;
        while self.next_out < self.next_seq {
            self.collect(true)?;
        }
        let crc = self.crc.clone().finalize();
        let trailer = match &self.framing {
            Framing::Gzip => [crc.to_le_bytes(), (self.total_in as u32).to_le_bytes()].concat(),
            Framing::Zip(entry) => {
                let compressed = self.written - self.header_len;
                entry.trailer(crc, compressed, self.total_in, self.header_len)
            }
        };
        self.write_out(&trailer)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write + Send> Compressor for ParallelDeflate<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.write_all(data)
    }

    fn stored_bound(&self) -> u64 {
        ParallelDeflate::stored_bound(self)
    }

    fn settle(&mut self) -> io::Result<()> {
        ParallelDeflate::settle(self)
    }

    fn finish(self: Box<Self>) -> io::Result<()> {
        ParallelDeflate::finish(*self).map(drop)
    }
}

/// Raw deflate of one block: primed with `dictionary`, ended with a sync flush (byte-aligned,
/// not final) or, for the last block, with the final block.
fn deflate_block(level: u32, dictionary: &[u8], input: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Compression::new(level), false);
    if !dictionary.is_empty() {
        c.set_dictionary(dictionary).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(input.len() / 3 + 1024);
    let flush = if last { FlushCompress::Finish } else { FlushCompress::Sync };
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(4096));
        }
        let status = c.compress_vec(&input[consumed..], &mut out, flush).map_err(io::Error::other)?;
        let all_in = c.total_in() as usize == input.len();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is in and room was left over.
            _ if !last && all_in && out.capacity() > out.len() => break,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn round_trip(input: &[u8], level: u32) -> Vec<u8> {
        let mut gz = ParallelDeflate::new(Vec::new(), level, Framing::Gzip).unwrap();
        for piece in input.chunks(10_007) {
            gz.write_all(piece).unwrap();
        }
        let bytes = gz.finish().unwrap();
        let mut back = Vec::new();
        // A single-member reader: the output must be one gzip member.
        flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut back).unwrap();
        assert!(back == input, "round trip of {} bytes", input.len());
        bytes
    }

    fn csv(rows: usize) -> Vec<u8> {
        (0..rows)
            .map(|i| format!("{i},GET,/shop/item/{},200,{}\n", i % 977, i * 7 % 10_000))
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn one_gzip_member_any_size() {
        for n in [0, 1, 100, 5_000, 60_000] {
            round_trip(&csv(n), 6);
        }
        round_trip(b"", 0);
    }

    #[test]
    fn ratio_matches_a_single_stream() {
        let input = csv(200_000);
        let parallel = round_trip(&input, 6).len() as f64;
        let mut single = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
        io::Write::write_all(&mut single, &input).unwrap();
        let single = single.finish().unwrap().len() as f64;
        assert!(parallel <= single * 1.03, "parallel {parallel} vs single stream {single}");
    }
}
