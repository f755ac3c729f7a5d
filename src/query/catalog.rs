//! The catalog file (TOML): table name → location, format and time column.
//!
//! ```toml
//! [[tables]]
//! name = "demo.ecommerce.data"     # one-, two- or three-part name
//! location = "data"                # file or directory, relative to this file
//! format = "csv"                  # "csv" (default), "json" (NDJSON; also "ndjson", "jsonl") or "parquet"
//! compression = "gzip"             # CSV / NDJSON files: "none", "gzip" or "zstd" (see below)
//! time_column = "eventdate"        # from/to and continuous windows apply to it
//! time_unit = "ms"                 # an integer time column: epoch "ms" (default) or "s"
//! ```
//!
//! A table's files are compressed as its `compression` key says; without the key, a file named
//! on its own is read by its extension (`.gz` gzip, `.zst` zstd, otherwise plain), and a
//! directory or prefix holds plain files. A directory is read for its files of the format's
//! extension, plus the compression's: `.csv`, `.csv.gz`, `.json.zst`, `.parquet`. Parquet
//! compresses inside the file: it takes no `compression`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(default)]
    pub tables: Vec<TableEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableEntry {
    pub name: String,
    pub location: PathBuf,
    #[serde(default)]
    pub format: TableFormat,
    /// How CSV / NDJSON files are compressed; `None`: by the file's extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<TableCompression>,
    pub time_column: Option<String>,
    /// The unit of a time column held as an integer (epoch seconds or milliseconds).
    #[serde(default)]
    pub time_unit: EpochUnit,
}

/// What an integer time column counts since 1970-01-01 UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EpochUnit {
    #[default]
    #[serde(rename = "ms")]
    Milliseconds,
    #[serde(rename = "s")]
    Seconds,
}

impl EpochUnit {
    pub fn millis(self) -> i64 {
        match self {
            EpochUnit::Milliseconds => 1,
            EpochUnit::Seconds => 1000,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    #[default]
    Csv,
    /// Newline-delimited JSON.
    #[serde(alias = "ndjson", alias = "jsonl")]
    Json,
    Parquet,
}

impl TableFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            TableFormat::Csv => "csv",
            TableFormat::Json => "json",
            TableFormat::Parquet => "parquet",
        }
    }
}

/// How a CSV or NDJSON table's files are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableCompression {
    None,
    #[serde(alias = "gz")]
    Gzip,
    #[serde(alias = "zst")]
    Zstd,
}

impl TableCompression {
    pub fn as_str(self) -> &'static str {
        match self {
            TableCompression::None => "none",
            TableCompression::Gzip => "gzip",
            TableCompression::Zstd => "zstd",
        }
    }

    /// The compression a file's name says: `.gz` gzip, `.zst` / `.zstd` zstd.
    pub fn of_file_name(name: &str) -> TableCompression {
        let name = name.to_ascii_lowercase();
        if name.ends_with(".gz") {
            TableCompression::Gzip
        } else if name.ends_with(".zst") || name.ends_with(".zstd") {
            TableCompression::Zstd
        } else {
            TableCompression::None
        }
    }
}

impl TableFormat {
    /// A time window reads only the matching part of the table (files and row groups pruned by
    /// their statistics): only then is a job run in time slices (see [`super::slices`]).
    pub fn prunes_by_time(self) -> bool {
        match self {
            TableFormat::Csv | TableFormat::Json => false,
            TableFormat::Parquet => true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("catalog: table name \"{0}\" must be one to three dot-separated identifiers")]
    BadName(String),
}

/// The object store a location is in (`None` for a local path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StoreScheme {
    S3,
    Gcs,
    Azure,
}

/// The store of an object-store location and its root URL (`scheme://bucket`, what the query
/// engine keys its stores by): `s3://`, `gs://`, `az://`, `abfs://`, `abfss://`.
pub fn store_of(location: &str) -> Option<(StoreScheme, url::Url)> {
    let (scheme, rest) = location.split_once("://")?;
    let kind = match scheme {
        "s3" => StoreScheme::S3,
        "gs" => StoreScheme::Gcs,
        "az" | "abfs" | "abfss" => StoreScheme::Azure,
        _ => return None,
    };
    let bucket = rest.split('/').next().filter(|b| !b.is_empty())?;
    Some((kind, url::Url::parse(&format!("{scheme}://{bucket}")).ok()?))
}

impl Catalog {
    /// Reads the catalog; relative locations are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Self, CatalogError> {
        let read_err = |detail: String| CatalogError::Read { path: path.display().to_string(), detail };
        let text = std::fs::read_to_string(path).map_err(|e| read_err(e.to_string()))?;
        let mut catalog: Catalog = toml_from_str(&text).map_err(read_err)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for t in &mut catalog.tables {
            split_name(&t.name)?;
            // `file:///abs/path` is the local path it names.
            if let Some(url) = t.location.to_str().filter(|l| l.starts_with("file://")) {
                t.location =
                    url::Url::parse(url).ok().and_then(|u| u.to_file_path().ok()).ok_or_else(|| {
                        read_err(format!("table {}: {url} is not a file:///absolute/path URL", t.name))
                    })?;
            }
            let is_url = t.location.to_str().is_some_and(|l| l.contains("://"));
            if is_url && t.location.to_str().and_then(store_of).is_none() {
                return Err(read_err(format!(
                    "table {}: locations are local paths or file://, s3://, gs://, az://, abfs:// or abfss:// URLs \
                     with a bucket or container",
                    t.name
                )));
            }
            if t.format == TableFormat::Parquet && t.compression.is_some_and(|c| c != TableCompression::None)
            {
                return Err(read_err(format!(
                    "table {}: a Parquet table takes no compression (Parquet compresses inside its files); remove the compression key",
                    t.name
                )));
            }
            if t.location.is_relative() && !is_url {
                t.location = base.join(&t.location);
            }
        }
        Ok(catalog)
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut out = String::new();
        for t in &self.tables {
            out.push_str("[[tables]]\n");
            out.push_str(&format!("name = {:?}\n", t.name));
            out.push_str(&format!("location = {:?}\n", t.location.display().to_string()));
            out.push_str(&format!("format = {:?}\n", t.format.as_str()));
            if let Some(c) = t.compression {
                out.push_str(&format!("compression = {:?}\n", c.as_str()));
            }
            if let Some(c) = &t.time_column {
                out.push_str(&format!("time_column = {c:?}\n"));
            }
            if t.time_unit == EpochUnit::Seconds {
                out.push_str("time_unit = \"s\"\n");
            }
            out.push('\n');
        }
        std::fs::write(path, out)
    }
}

fn toml_from_str(text: &str) -> Result<Catalog, String> {
    use figment::providers::{Format, Toml};
    figment::Figment::from(Toml::string(text)).extract().map_err(|e| e.to_string())
}

/// `a.b.c` → (catalog, schema, table); shorter names use DataFusion's defaults.
pub fn split_name(name: &str) -> Result<(Option<&str>, Option<&str>, &str), CatalogError> {
    let parts: Vec<&str> = name.split('.').collect();
    let ok = parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'));
    match (ok, parts.as_slice()) {
        (true, [t]) => Ok((None, None, t)),
        (true, [s, t]) => Ok((None, Some(s), t)),
        (true, [c, s, t]) => Ok((Some(c), Some(s), t)),
        _ => Err(CatalogError::BadName(name.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_names() {
        assert_eq!(split_name("demo.ecommerce.data").unwrap(), (Some("demo"), Some("ecommerce"), "data"));
        assert_eq!(split_name("t").unwrap(), (None, None, "t"));
        assert!(split_name("a..b").is_err());
        assert!(split_name("a.b.c.d").is_err());
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = std::env::temp_dir().join(format!("fwd-cat-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = Catalog {
            tables: vec![TableEntry {
                name: "demo.ecommerce.data".into(),
                location: "data".into(),
                format: TableFormat::Csv,
                compression: Some(TableCompression::Zstd),
                time_column: Some("eventdate".into()),
                time_unit: EpochUnit::Seconds,
            }],
        };
        let path = dir.join("catalog.toml");
        c.save(&path).unwrap();
        let back = Catalog::load(&path).unwrap();
        assert_eq!(back.tables[0].location, dir.join("data"));
        assert_eq!(back.tables[0].time_column.as_deref(), Some("eventdate"));
        assert_eq!(back.tables[0].time_unit, EpochUnit::Seconds);
        assert_eq!(back.tables[0].compression, Some(TableCompression::Zstd));
    }

    /// The error loading a catalog whose only table is `entry` (after its name and location).
    fn load_error(entry: &str) -> String {
        let dir = std::env::temp_dir().join(format!("fwd-cat-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("catalog.toml");
        std::fs::write(&path, format!("[[tables]]\nname = \"t\"\nlocation = \"t\"\n{entry}\n")).unwrap();
        Catalog::load(&path).unwrap_err().to_string()
    }

    #[test]
    fn bad_formats_and_compressions_are_named() {
        let err = load_error("format = \"avro\"");
        assert!(err.contains("avro") && err.contains("parquet") && err.contains("format"), "{err}");
        let err = load_error("compression = \"bz2\"");
        assert!(err.contains("bz2") && err.contains("zstd") && err.contains("compression"), "{err}");
        let err = load_error("format = \"parquet\"\ncompression = \"gzip\"");
        assert!(err.contains("Parquet table takes no compression"), "{err}");
    }

    #[test]
    fn formats_have_their_usual_names() {
        let dir = std::env::temp_dir().join(format!("fwd-cat-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("catalog.toml");
        let entries: String = ["ndjson", "jsonl", "json", "parquet", "csv"]
            .iter()
            .map(|f| format!("[[tables]]\nname = \"t_{f}\"\nlocation = \"t\"\nformat = \"{f}\"\n"))
            .collect();
        std::fs::write(&path, entries).unwrap();
        let formats: Vec<TableFormat> =
            Catalog::load(&path).unwrap().tables.iter().map(|t| t.format).collect();
        use TableFormat::*;
        assert_eq!(formats, vec![Json, Json, Json, Parquet, Csv]);
    }

    #[test]
    fn compression_is_read_from_file_names() {
        assert_eq!(TableCompression::of_file_name("a.csv.gz"), TableCompression::Gzip);
        assert_eq!(TableCompression::of_file_name("a.JSON.ZST"), TableCompression::Zstd);
        assert_eq!(TableCompression::of_file_name("a.ndjson.zstd"), TableCompression::Zstd);
        assert_eq!(TableCompression::of_file_name("a.csv"), TableCompression::None);
    }
}
