//! The shape of the parts a request asks for: the encoding (`file.format`), Devo's `format`
//! (the compression), `parquet.compression`, the zip password and `manifest`. Checked
//! together, since which values go together depends on the encoding: Parquet compresses
//! inside the file, so it takes no outer compression, and only zip takes a password.

use serde_json::{Map, Value};

use super::refusal::{RequestError, codes::*, err, shown};
use super::spec::{Encoding, Format, ParquetCompression};
use crate::secret::Secret;

/// How the parts are written, validated.
pub(super) struct Shape {
    pub format: Format,
    pub file_format: Encoding,
    pub parquet_compression: ParquetCompression,
    pub manifest: bool,
    pub file_password: Option<Secret>,
}

pub(super) fn parse_shape(params: &Map<String, Value>) -> Result<Shape, RequestError> {
    let encodings = || Encoding::ALL.map(Encoding::name).join(", ");
    let file_format = match params.get("file.format") {
        None | Some(Value::Null) => Encoding::Csv,
        Some(Value::String(s)) => Encoding::parse(s).map_or_else(
            || {
                err(
                    BAD_FILE_FORMAT,
                    format!("file.format \"{}\" is not supported; use {}", shown(s), encodings()),
                )
            },
            Ok,
        )?,
        Some(_) => return err(BAD_FILE_FORMAT, format!("file.format must be one of {}", encodings())),
    };
    let formats = || Format::ALL.map(Format::name).join(", ");
    let format = match params.get("format") {
        // Devo's default is zip; a Parquet file is compressed inside and stored as it is.
        None | Some(Value::Null) if file_format.is_columnar() => Format::Plain,
        None | Some(Value::Null) => Format::Zip,
        Some(Value::String(s)) => Format::parse(s).map_or_else(
            || err(BAD_FORMAT, format!("format \"{}\" is not supported; use {}", shown(s), formats())),
            Ok,
        )?,
        Some(_) => return err(BAD_FORMAT, format!("format must be one of {}", formats())),
    };
    if file_format.is_columnar() && format != Format::Plain {
        return err(
            BAD_FORMAT,
            format!(
                "format {} cannot wrap file.format parquet: Parquet compresses inside the file; leave \
                 format out (or plain) and choose parquet.compression ({})",
                format.name(),
                ParquetCompression::ALL.map(ParquetCompression::name).join(", ")
            ),
        );
    }
    let codecs = || ParquetCompression::ALL.map(ParquetCompression::name).join(", ");
    let parquet_compression = match params.get("parquet.compression") {
        None | Some(Value::Null) => ParquetCompression::default(),
        Some(_) if !file_format.is_columnar() => {
            return err(
                BAD_PARQUET_COMPRESSION,
                format!(
                    "parquet.compression works only with file.format parquet, not {}; use format to \
                     compress {} parts",
                    file_format.name(),
                    file_format.name()
                ),
            );
        }
        Some(Value::String(s)) => ParquetCompression::parse(s).map_or_else(
            || {
                err(
                    BAD_PARQUET_COMPRESSION,
                    format!("parquet.compression \"{}\" is not supported; use {}", shown(s), codecs()),
                )
            },
            Ok,
        )?,
        Some(_) => {
            return err(BAD_PARQUET_COMPRESSION, format!("parquet.compression must be one of {}", codecs()));
        }
    };
    let file_password = match params.get("file.password") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.is_empty() => None,
        Some(Value::String(p)) => Some(Secret::new(p.clone())),
        Some(_) => return err(PASSWORD_NEEDS_ZIP, "file.password must be a string"),
    };
    if file_password.is_some() && format != Format::Zip {
        let what = if file_format.is_columnar() { "file.format parquet" } else { format.name() };
        return err(PASSWORD_NEEDS_ZIP, format!("file.password works only with format zip, not {what}"));
    }
    let manifest = match params.get("manifest") {
        None | Some(Value::Null) => false,
        Some(v) => as_bool(v).map_or_else(|| err(BAD_MANIFEST, "manifest must be true or false"), Ok)?,
    };
    Ok(Shape { format, file_format, parquet_compression, manifest, file_password })
}

pub(super) fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_u64().filter(|n| *n <= 1).map(|n| n == 1),
        _ => None,
    }
}
