//! No compression: the encoded bytes are the stored object (`format: plain`).

use std::io::{self, Write};

use super::Compressor;

pub struct Plain<W> {
    out: W,
    written: u64,
}

impl<W: Write> Plain<W> {
    pub fn new(out: W) -> Self {
        Self { out, written: 0 }
    }
}

impl<W: Write + Send> Compressor for Plain<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Exact: nothing is held.
    fn stored_bound(&self) -> u64 {
        self.written
    }

    fn settle(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.out.flush()
    }
}
