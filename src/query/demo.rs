//! The demo table `demo.ecommerce.data`: web access logs, generated deterministically (the
//! same rows for the same count and start, every time) at any size, as CSV.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::catalog::{Catalog, TableEntry, TableFormat};
use crate::encode::csv_quote::push_field;

pub const TABLE: &str = "demo.ecommerce.data";
pub const TIME_COLUMN: &str = "eventdate";
pub const COLUMNS: [&str; 11] = [
    "eventdate",
    "clientIpAddress",
    "method",
    "uri",
    "protocol",
    "statusCode",
    "bytesTransferred",
    "referralUri",
    "userAgent",
    "cookie",
    "timeTaken",
];

/// 2026-01-01T00:00:00Z: the first event of the demo table.
pub const DEFAULT_START_MS: i64 = 1_767_225_600_000;
/// One event every 40 ms by default (2,160,000 a day).
pub const DEFAULT_STEP_MS: i64 = 40;

const METHODS: [&str; 5] = ["GET", "GET", "GET", "POST", "PUT"];
const PATHS: [&str; 8] = [
    "/category.screen?category_id=GIFTS",
    "/product.screen?product_id=FL-DSH-01",
    "/cart.do?action=view&itemId=EST-6",
    "/oldlink?item_id=EST-26",
    "/category.screen?category_id=SURPRISE",
    "/cart.do?action=purchase&itemId=EST-18",
    "/product.screen?product_id=RP-LI-02",
    "/index.html",
];
const STATUSES: [u16; 10] = [200, 200, 200, 200, 200, 200, 304, 404, 500, 503];
const AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
];
const REFERRERS: [&str; 4] =
    ["http://www.google.com", "http://www.bing.com", "http://www.demo-shop.com", "-"];

/// SplitMix64: tiny, fast and the same on every platform and release, which is what
/// "deterministic" needs here.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

/// Row `i` of the demo table (with its line end), as CSV.
pub fn push_row(out: &mut Vec<u8>, i: u64, start_ms: i64, step_ms: i64) {
    let mut rng = SplitMix(i.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED);
    let ts = DateTime::<Utc>::from_timestamp_millis(start_ms + i as i64 * step_ms).unwrap_or_default();
    let ip = rng.next();
    let fields: [String; 11] = [
        ts.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        format!(
            "{}.{}.{}.{}",
            1 + (ip & 0xDF) % 223,
            (ip >> 8) & 0xFF,
            (ip >> 16) & 0xFF,
            1 + ((ip >> 24) & 0xFD)
        ),
        rng.pick(&METHODS).to_string(),
        format!(
            "{}&JSESSIONID=SD{}SL{}FF{}ADFF{}",
            rng.pick(&PATHS),
            rng.next() % 10,
            rng.next() % 10,
            rng.next() % 100,
            rng.next() % 10_000
        ),
        "HTTP 1.1".to_string(),
        rng.pick(&STATUSES).to_string(),
        (100 + rng.next() % 4000).to_string(),
        rng.pick(&REFERRERS).to_string(),
        rng.pick(&AGENTS).to_string(),
        format!("session_{:016x};uid={:08x};cart={}", rng.next(), rng.next() as u32, rng.next() % 50),
        (1 + rng.next() % 999).to_string(),
    ];
    for (k, f) in fields.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        push_field(out, f.as_bytes());
    }
    out.push(b'\n');
}

/// Writes rows `first..first + count` as one CSV file (with the header), for example to
/// append to the table while a continuous job runs.
pub fn write_csv(path: &Path, first: u64, count: u64, start_ms: i64, step_ms: i64) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    w.write_all(COLUMNS.join(",").as_bytes())?;
    w.write_all(b"\n")?;
    let mut row = Vec::with_capacity(512);
    for i in first..first + count {
        row.clear();
        push_row(&mut row, i, start_ms, step_ms);
        w.write_all(&row)?;
    }
    w.flush()
}

/// Creates `<dir>/data/ecommerce-000.csv` with `rows` rows and `<dir>/catalog.toml` naming it
/// as `demo.ecommerce.data`; returns the catalog path. Existing data of the same size is kept.
pub fn create(dir: &Path, rows: u64) -> io::Result<PathBuf> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let marker = dir.join(".rows");
    let file = data.join("ecommerce-000.csv");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(&rows.to_string()) || !file.exists() {
        let tmp = data.join(".ecommerce-000.csv.tmp");
        write_csv(&tmp, 0, rows, DEFAULT_START_MS, DEFAULT_STEP_MS)?;
        std::fs::rename(&tmp, &file)?;
        std::fs::write(&marker, rows.to_string())?;
    }
    let catalog = Catalog {
        tables: vec![TableEntry {
            name: TABLE.into(),
            location: "data".into(),
            format: TableFormat::Csv,
            compression: None,
            time_column: Some(TIME_COLUMN.into()),
            time_unit: Default::default(),
        }],
    };
    let path = dir.join("catalog.toml");
    // Written only when missing: other processes on this data directory may be reading it.
    if !path.exists() {
        catalog.save(&path)?;
    }
    Ok(path)
}

/// The time range (epoch ms, `[from, to)`) that holds the first `rows` rows.
pub fn time_range(rows: u64) -> (i64, i64) {
    (DEFAULT_START_MS, DEFAULT_START_MS + rows as i64 * DEFAULT_STEP_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_deterministic_and_complete() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        push_row(&mut a, 42, DEFAULT_START_MS, DEFAULT_STEP_MS);
        push_row(&mut b, 42, DEFAULT_START_MS, DEFAULT_STEP_MS);
        assert_eq!(a, b);
        let text = String::from_utf8(a).unwrap();
        assert!(text.starts_with("2026-01-01 00:00:01.680,"), "{text}");
        let mut c = Vec::new();
        push_row(&mut c, 43, DEFAULT_START_MS, DEFAULT_STEP_MS);
        assert_ne!(text.as_bytes(), &c[..]);
    }
}
