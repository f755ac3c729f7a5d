//! Every compressor's size bound holds: before a settle, after it, and at the end.

use std::io::Read;
use std::sync::{Arc, Mutex};

use super::*;

/// A `Write` whose bytes the test can read while a compressor owns it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn lines(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| format!("{i},GET,/shop/item/{},{},{}\n", i * 7919 % 1000, 200 + i % 3, i * 31 % 100_000))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn the_bound_holds_before_and_after_settling_and_at_the_end() {
    let input = lines(60_000);
    for compression in Compression::ALL {
        for password in [None, Some(Secret::new("pw".to_string()))] {
            if password.is_some() && compression != Compression::Zip {
                continue;
            }
            let out = Shared::default();
            let options = Options { deflate_level: 6, zstd_level: 3, password, entry_name: "x.csv".into() };
            let mut c = compressor(compression, &options, out.clone()).unwrap();
            for (n, piece) in input.chunks(50_000).enumerate() {
                c.write(piece).unwrap();
                let loose = c.stored_bound();
                assert!(
                    loose >= out.0.lock().unwrap().len() as u64,
                    "{compression:?}: the bound counts what is out"
                );
                if n % 5 == 4 {
                    c.settle().unwrap();
                    let settled = c.stored_bound();
                    let written = out.0.lock().unwrap().len() as u64;
                    assert!(settled <= loose, "{compression:?}: settling only tightens");
                    assert!(
                        settled >= written && settled <= written + 64,
                        "{compression:?}: settled {settled} vs {written} out"
                    );
                }
            }
            let last = c.stored_bound();
            c.finish().unwrap();
            let stored = out.0.lock().unwrap().clone();
            // Only the format's trailer may come on top (zip's central directory is the longest).
            assert!(stored.len() as u64 <= last + 300, "{compression:?}: {} vs bound {last}", stored.len());
            if compression == Compression::Zstd {
                let mut back = Vec::new();
                ::zstd::stream::read::Decoder::new(&stored[..]).unwrap().read_to_end(&mut back).unwrap();
                assert!(back == input, "one zstd frame holding every byte");
                let frame = ::zstd::zstd_safe::find_frame_compressed_size(&stored).unwrap();
                assert_eq!(frame, stored.len(), "one zstd frame, the whole output");
                assert!(
                    stored.len() * 4 < input.len(),
                    "zstd compresses ({} of {})",
                    stored.len(),
                    input.len()
                );
            }
        }
    }
}
