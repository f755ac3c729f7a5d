//! Parquet: the columnar encoding. Unlike CSV and JSON Lines it cannot hand out one row's
//! bytes at a time: rows are gathered into row groups, encoded column by column and
//! compressed page by page inside the file (`parquet.compression`), and a file is complete
//! only with its footer. So it is not a row [`super::Encoder`]: the part writer gives it
//! whole slices of a batch ([`crate::part::ParquetPart`]) and ends row groups early as a
//! part nears its size limit. What it shares with the row encodings is the schema: the
//! query's Arrow schema is kept as it is (timestamps with their unit and zone).

use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use serde::{Deserialize, Serialize};

/// How the pages inside a Parquet file are compressed: `parquet.compression`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParquetCompression {
    #[default]
    Zstd,
    Snappy,
    Gzip,
    Lz4,
    None,
}

impl ParquetCompression {
    pub const ALL: [ParquetCompression; 5] = [
        ParquetCompression::Zstd,
        ParquetCompression::Snappy,
        ParquetCompression::Gzip,
        ParquetCompression::Lz4,
        ParquetCompression::None,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name().eq_ignore_ascii_case(s))
    }

    /// The name as the API takes it.
    pub fn name(self) -> &'static str {
        match self {
            ParquetCompression::Zstd => "zstd",
            ParquetCompression::Snappy => "snappy",
            ParquetCompression::Gzip => "gzip",
            ParquetCompression::Lz4 => "lz4",
            ParquetCompression::None => "none",
        }
    }

    fn codec(self, zstd_level: i32) -> Compression {
        match self {
            // Levels are clamped by the config's validation; the fallbacks only keep a bad
            // value from failing a part.
            ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::try_new(zstd_level).unwrap_or_default()),
            ParquetCompression::Snappy => Compression::SNAPPY,
            ParquetCompression::Gzip => Compression::GZIP(GzipLevel::default()),
            // LZ4_RAW: the codec every current reader agrees on (the old LZ4 framing differs
            // between Hadoop and other writers).
            ParquetCompression::Lz4 => Compression::LZ4_RAW,
            ParquetCompression::None => Compression::UNCOMPRESSED,
        }
    }
}

/// Rows in a row group at most (the parquet crate's default); row groups also close by
/// size ([`ROW_GROUP_BYTES`], the writer splits a batch itself) and as a part nears its limit.
pub const ROW_GROUP_ROWS: usize = 1024 * 1024;

/// A row group is closed once its encoded size reaches this (`worker.parquet_row_group_mb`):
/// the writer holds the open row group's pages in memory, so this bounds a Parquet export's
/// memory per part. 16 MiB rather than 64: an export's peak RSS fell by 45-70 MiB, its speed
/// stayed level and its size grew by 2% (`bench/formats.sh`, 2026-12-01); 16 MiB of zstd pages
/// is about 400,000 web-log rows, more than DuckDB's 122,880 per row group.
pub const ROW_GROUP_BYTES: u64 = 16 * 1024 * 1024;

/// How every Parquet part is written: statistics per page and per row group (so readers prune
/// by them), dictionaries, `compression` in every page, row groups closed once their encoded
/// size reaches `row_group_bytes` (at least 1).
pub fn writer_properties(
    compression: ParquetCompression,
    zstd_level: i32,
    row_group_bytes: u64,
) -> WriterProperties {
    WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(compression.codec(zstd_level))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_dictionary_enabled(true)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_max_row_group_bytes(Some(usize::try_from(row_group_bytes).unwrap_or(usize::MAX).max(1)))
        .set_created_by(format!("forwarder {}", env!("CARGO_PKG_VERSION")))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in ParquetCompression::ALL {
            assert_eq!(ParquetCompression::parse(c.name()), Some(c));
            assert_eq!(ParquetCompression::parse(&c.name().to_uppercase()), Some(c));
        }
        assert_eq!(ParquetCompression::parse("brotli"), None);
        assert_eq!(ParquetCompression::default(), ParquetCompression::Zstd);
    }

    #[test]
    fn properties_carry_the_codec() {
        let p = writer_properties(ParquetCompression::Snappy, 3, ROW_GROUP_BYTES);
        assert_eq!(p.compression(&"x".into()), Compression::SNAPPY);
        let p = writer_properties(ParquetCompression::Zstd, 5, ROW_GROUP_BYTES);
        assert_eq!(p.compression(&"x".into()), Compression::ZSTD(ZstdLevel::try_new(5).unwrap()));
    }
}
