//! A CSV table's schema, inferred from its first records as RFC 4180 reads them.
//!
//! DataFusion infers a CSV schema from chunks of the file cut at line ends outside quotes, but
//! the splitter it uses (`object_store`'s `newline_delimited_stream`) loses track of quotes:
//! it takes `\` for an escape character, which RFC 4180 has none of, and it scans each buffer
//! from both ends with one quote state. A chunk then starts inside a quoted value holding a
//! newline, and every query of the table fails with "unequal lengths between records". Here
//! the chunks are cut as RFC 4180 quotes, and DataFusion's own inference reads them.

use bytes::Bytes;
use datafusion::arrow::datatypes::Schema;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;

use super::table_files::TableFiles;

/// The schema of the table's CSV files (one file, or the `.csv` — or `.csv.gz`, `.csv.zst` —
/// files of a directory or prefix, decompressed), from their first `max_records` records;
/// `None` when there is no file to read (DataFusion then says what is missing).
pub(super) async fn infer(
    ctx: &SessionContext,
    table: &TableFiles,
    max_records: usize,
) -> Result<Option<Schema>, DataFusionError> {
    let state = ctx.state();
    let url = ListingTableUrl::parse(&table.location)?;
    let store = state.runtime_env().object_store(&url)?;
    let files: Vec<_> =
        url.list_all_files(&state, store.as_ref(), &table.extension).await?.try_collect().await?;
    if files.is_empty() {
        return Ok(None);
    }
    let format = CsvFormat::default().with_has_header(true);
    let mut schemas = Vec::new();
    let mut left = max_records;
    for file in files {
        let stored = store
            .get(&file.location)
            .await?
            .into_stream()
            .map_err(|e| DataFusionError::ObjectStore(Box::new(e)))
            .boxed();
        let bytes = table.compression_type().convert_stream(stored)?;
        let (schema, read) =
            format.infer_schema_from_stream(&state, left, record_chunks(bytes)).await.map_err(|e| {
                DataFusionError::Context(
                    format!("Error when processing CSV file {}", file.location),
                    Box::new(e),
                )
            })?;
        schemas.push(schema);
        left = left.saturating_sub(read);
        if left == 0 {
            break;
        }
    }
    Ok(Some(Schema::try_merge(schemas)?))
}

/// `bytes` in chunks of whole records: each cut follows a line end (`\n`, `\r\n` or a bare
/// `\r`) outside quotes.
fn record_chunks<S>(bytes: S) -> impl Stream<Item = Result<Bytes, DataFusionError>>
where
    S: Stream<Item = Result<Bytes, DataFusionError>> + Unpin,
{
    futures::stream::unfold(
        (bytes, RecordSplitter::default(), false),
        |(mut bytes, mut split, done)| async move {
            if done {
                return None;
            }
            loop {
                match bytes.next().await {
                    Some(Ok(more)) => {
                        if let Some(chunk) = split.push(&more) {
                            return Some((Ok(chunk), (bytes, split, false)));
                        }
                    }
                    Some(Err(e)) => return Some((Err(e), (bytes, split, true))),
                    None => {
                        let rest = split.finish();
                        return (!rest.is_empty()).then_some((Ok(rest), (bytes, split, true)));
                    }
                }
            }
        },
    )
}

/// Finds record ends in a byte stream as RFC 4180 quotes: a `"` opens or closes a quoted
/// value, and a doubled `""` inside one closes and reopens it, which leaves it open.
#[derive(Default)]
struct RecordSplitter {
    /// Bytes not yet given out as a chunk.
    pending: Vec<u8>,
    /// How far `pending` has been read (a `\r` at the end waits for the byte after it).
    scanned: usize,
    in_quotes: bool,
}

impl RecordSplitter {
    /// Adds `bytes`; returns the records completed so far, if any.
    fn push(&mut self, bytes: &[u8]) -> Option<Bytes> {
        self.pending.extend_from_slice(bytes);
        let mut end = None;
        let mut i = self.scanned;
        while i < self.pending.len() {
            match self.pending[i] {
                b'"' => self.in_quotes = !self.in_quotes,
                b'\n' if !self.in_quotes => end = Some(i + 1),
                b'\r' if !self.in_quotes => match self.pending.get(i + 1) {
                    // `\r\n` ends at the `\n`.
                    Some(b'\n') => {}
                    Some(_) => end = Some(i + 1),
                    None => break,
                },
                _ => {}
            }
            i += 1;
        }
        self.scanned = i;
        let end = end?;
        self.scanned -= end;
        Some(Bytes::from(self.pending.drain(..end).collect::<Vec<u8>>()))
    }

    /// The last record (not ended by a line end), if any.
    fn finish(&mut self) -> Bytes {
        self.scanned = 0;
        Bytes::from(std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunks of `text` fed in pieces of `size` bytes.
    fn chunks(text: &str, size: usize) -> Vec<String> {
        let mut split = RecordSplitter::default();
        let mut out: Vec<String> = text
            .as_bytes()
            .chunks(size)
            .filter_map(|piece| split.push(piece))
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        out.push(String::from_utf8(split.finish().to_vec()).unwrap());
        out
    }

    #[test]
    fn cuts_only_at_line_ends_outside_quotes() {
        let text = "a,b\n1,\"x\ny\"\r\n2,\"say \"\"hi\"\"\r\nthere\"\r3,\"back\\\"\n4,\"C:\\\",\"\r\"\n5,z";
        for size in 1..=text.len() {
            let got = chunks(text, size);
            assert_eq!(got.concat(), text, "nothing lost or repeated, pieces of {size}");
            for chunk in &got[..got.len() - 1] {
                assert!(chunk.ends_with('\n') || chunk.ends_with('\r'), "pieces of {size}: {chunk:?}");
            }
            // Every record starts with its id: a chunk starting otherwise starts inside one.
            let starts: Vec<char> = got.iter().skip(1).filter_map(|c| c.chars().next()).collect();
            assert!(
                starts.iter().all(|c| c.is_ascii_digit()),
                "pieces of {size}: chunks start inside a record: {got:?}"
            );
        }
    }
}
