//! Part files, as pure code: CSV encoding of record batches ([`csv`]), compression into
//! upload-sized chunks ([`encoder`], [`sink`]) and when to start a new part ([`rotation`]).

pub mod csv;
pub mod encoder;
mod fields;
mod pgzip;
pub mod rotation;
pub mod sink;
mod zip_frame;

pub use encoder::{FinishedPart, PartEncoder, PartOptions};
pub use rotation::{Rotation, RotationPolicy};
