//! Part files, as pure code: the part writer that packs one encoder's rows with one
//! compressor into upload-sized chunks ([`mod@file`], [`sink`]), the Parquet part writer
//! ([`parquet_file`]) and when to start a new part
//! ([`rotation`]). The rows come from [`crate::encode`], the packing from [`crate::compress`].

pub mod file;
pub mod parquet_file;
pub mod rotation;
pub mod sink;

pub use file::{FinishedPart, PartFile, PartOptions};
pub use parquet_file::ParquetPart;
pub use rotation::{Rotation, RotationPolicy};
