//! Where a catalog table's files are, as DataFusion lists them: the location, the compression
//! of the files, and the ending of the ones read in a directory or prefix.

use datafusion::datasource::file_format::file_compression_type::FileCompressionType;

use super::catalog::{TableCompression, TableEntry, TableFormat};

/// Where a table's files are, as DataFusion lists them.
pub(super) struct TableFiles {
    pub location: String,
    pub compression: TableCompression,
    /// The ending of the files read in a directory (`.csv.gz`); empty for one file, read
    /// whatever its name (`events.ndjson`, `export.txt`).
    pub extension: String,
}

impl TableFiles {
    pub fn of(table: &TableEntry) -> Self {
        let location = table.location.to_string_lossy().to_string();
        // An `s3://` location is one object only when its last segment has an extension
        // (`s3://b/logs` is a prefix, and without `/` DataFusion would read every object
        // under it).
        let one_file = if location.contains("://") {
            location.rsplit('/').next().is_some_and(|last| last.contains('.'))
        } else {
            table.location.is_file()
        };
        let compression = match (table.format, table.compression) {
            (TableFormat::Parquet, _) => TableCompression::None,
            (_, Some(c)) => c,
            (_, None) if one_file => TableCompression::of_file_name(&location),
            (_, None) => TableCompression::None,
        };
        let extension = if one_file {
            String::new()
        } else {
            let suffix = match compression {
                TableCompression::None => "",
                TableCompression::Gzip => ".gz",
                TableCompression::Zstd => ".zst",
            };
            format!(".{}{suffix}", table.format.as_str())
        };
        Self { location, compression, extension }
    }

    pub fn compression_type(&self) -> FileCompressionType {
        match self.compression {
            TableCompression::None => FileCompressionType::UNCOMPRESSED,
            TableCompression::Gzip => FileCompressionType::GZIP,
            TableCompression::Zstd => FileCompressionType::ZSTD,
        }
    }
}
