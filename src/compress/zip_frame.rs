//! The bytes around the one entry of a part's zip file, when its deflate stream comes from the
//! parallel deflater rather than the `zip` crate: a local header written before the data (its
//! sizes are not known yet, so they follow in a data descriptor), then the data descriptor,
//! the central directory and the end records. Always zip64, as the `zip` crate writes a part
//! (`large_file`), so that an entry may pass 4 GiB. PKWARE APPNOTE 6.3, sections 4.3-4.5.

const VERSION: u16 = 45; // zip64
/// Bit 3: sizes and CRC in a data descriptor after the data; bit 11: the name is UTF-8.
const FLAGS: u16 = (1 << 3) | (1 << 11);
const DEFLATE: u16 = 8;
/// The data descriptor: signature, CRC-32, compressed and uncompressed sizes (8 bytes each).
const DESCRIPTOR_LEN: u64 = 4 + 4 + 8 + 8;

pub struct ZipEntry {
    name: String,
    dos_time: u16,
    dos_date: u16,
}

impl ZipEntry {
    /// An entry named `name`, dated `at` (MS-DOS date and time, as the `zip` crate keeps them).
    pub fn new(name: &str, at: zip::DateTime) -> Self {
        Self { name: name.to_string(), dos_time: at.timepart(), dos_date: at.datepart() }
    }

    /// What precedes the deflate data.
    pub fn local_header(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(30 + self.name.len() + 20);
        put32(&mut b, 0x0403_4b50);
        put16(&mut b, VERSION);
        put16(&mut b, FLAGS);
        put16(&mut b, DEFLATE);
        put16(&mut b, self.dos_time);
        put16(&mut b, self.dos_date);
        put32(&mut b, 0); // CRC-32: in the data descriptor
        put32(&mut b, u32::MAX); // sizes: in the zip64 fields, then the data descriptor
        put32(&mut b, u32::MAX);
        put16(&mut b, self.name.len() as u16);
        put16(&mut b, 20);
        b.extend_from_slice(self.name.as_bytes());
        put16(&mut b, 0x0001); // zip64 extended information, sizes unknown yet
        put16(&mut b, 16);
        put64(&mut b, 0);
        put64(&mut b, 0);
        b
    }

    /// What follows the deflate data: `compressed` bytes of it, holding `uncompressed` bytes
    /// whose CRC-32 is `crc`, after a local header of `header_len` bytes at offset 0.
    pub fn trailer(&self, crc: u32, compressed: u64, uncompressed: u64, header_len: u64) -> Vec<u8> {
        let mut b = Vec::with_capacity(200 + self.name.len());
        put32(&mut b, 0x0807_4b50);
        put32(&mut b, crc);
        put64(&mut b, compressed);
        put64(&mut b, uncompressed);

        let directory_at = header_len + compressed + DESCRIPTOR_LEN;
        let directory_start = b.len();
        put32(&mut b, 0x0201_4b50);
        put16(&mut b, VERSION); // made by: MS-DOS attributes, zip64
        put16(&mut b, VERSION);
        put16(&mut b, FLAGS);
        put16(&mut b, DEFLATE);
        put16(&mut b, self.dos_time);
        put16(&mut b, self.dos_date);
        put32(&mut b, crc);
        put32(&mut b, u32::MAX);
        put32(&mut b, u32::MAX);
        put16(&mut b, self.name.len() as u16);
        put16(&mut b, 28);
        put16(&mut b, 0); // comment
        put16(&mut b, 0); // disk
        put16(&mut b, 0); // internal attributes
        put32(&mut b, 0); // external attributes
        put32(&mut b, u32::MAX); // local header offset: in the zip64 field
        b.extend_from_slice(self.name.as_bytes());
        put16(&mut b, 0x0001);
        put16(&mut b, 24);
        put64(&mut b, uncompressed);
        put64(&mut b, compressed);
        put64(&mut b, 0);
        let directory_len = (b.len() - directory_start) as u64;

        let end64_at = directory_at + directory_len;
        put32(&mut b, 0x0606_4b50); // zip64 end of central directory record
        put64(&mut b, 44);
        put16(&mut b, VERSION);
        put16(&mut b, VERSION);
        put32(&mut b, 0);
        put32(&mut b, 0);
        put64(&mut b, 1);
        put64(&mut b, 1);
        put64(&mut b, directory_len);
        put64(&mut b, directory_at);
        put32(&mut b, 0x0706_4b50); // its locator
        put32(&mut b, 0);
        put64(&mut b, end64_at);
        put32(&mut b, 1);
        put32(&mut b, 0x0605_4b50); // end of central directory
        put16(&mut b, 0);
        put16(&mut b, 0);
        put16(&mut b, 1);
        put16(&mut b, 1);
        put32(&mut b, directory_len as u32);
        put32(&mut b, u32::MAX);
        put16(&mut b, 0);
        b
    }
}

fn put16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}
