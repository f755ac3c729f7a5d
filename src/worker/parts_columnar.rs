//! Parquet parts: the part rules for a columnar encoding. Rows cannot be placed one at a time
//! (a row has no bytes of its own until its row group is written), so a batch is cut into
//! slices sized from the bytes per row seen so far: each slice aims at three quarters of the
//! room left in the part, so a slice never overshoots unless the estimate is a third off, and
//! the slices shrink as the part fills. When the estimated size reaches the limit the open row
//! group is closed early and the part is judged on its real size, as the row encodings settle
//! their compressor. A part thus ends within a few row groups of its limit, never past it by
//! more than one small slice and the footer.

use datafusion::arrow::record_batch::RecordBatch;

use super::{OpenFile, OpenPart, PartEvent, PartWriter};
use crate::part::ParquetPart;

impl PartWriter {
    pub(super) fn write_columns(
        &mut self,
        batch: &RecordBatch,
        times: Option<&[Option<i64>]>,
        events: &mut Vec<PartEvent>,
    ) -> std::io::Result<()> {
        let rows = batch.num_rows();
        // Arrow's size of the batch per row: the first guess of a row's stored size (Parquet
        // is smaller, so the guess errs towards small slices).
        let arrow_per_row = batch.get_array_memory_size() as f64 / rows.max(1) as f64;
        let mut start = 0;
        while start < rows {
            if let Some(OpenPart { file: OpenFile::Parquet(file), .. }) = self.open.as_mut()
                && (is_full(self.policy.max_bytes, file)?
                    || has_its_row_groups(self.policy.max_row_groups, file))
            {
                self.close(events)?;
            }
            if self.open.is_none() {
                self.open_part(events)?;
            }
            let open = self.open.as_mut().expect("a part is open");
            let OpenFile::Parquet(file) = &mut open.file else { unreachable!("Parquet opens Parquet parts") };
            let mut take = match self.policy.max_bytes {
                None => rows - start,
                Some(max) => {
                    let room = max.saturating_sub(file.stored_bound(max)?) as f64 * 0.75;
                    let per_row = file.stored_bytes_per_row().unwrap_or(arrow_per_row).max(1.0);
                    ((room / per_row) as usize).clamp(1, rows - start)
                }
            };
            // One write closes at most one row group: a part then ends exactly at its count
            // of row groups, and a row group ends near its size even when a batch is larger.
            match file.rows_fitting_row_group(arrow_per_row) {
                Some(fit) => take = take.min(fit),
                None => {
                    file.close_row_group()?;
                    continue;
                }
            }
            file.write(&batch.slice(start, take))?;
            if let Some(t) = times.and_then(|t| t[start..start + take].iter().flatten().max()) {
                open.max_time_ms = Some(open.max_time_ms.map_or(*t, |m| m.max(*t)));
            }
            self.rows_total += take as u64;
            start += take;
            let index = open.index;
            events.extend(file.take_chunks().into_iter().map(|data| PartEvent::Chunk { index, data }));
        }
        // A part that reached its limit with this batch's last rows ends now, as a row part
        // does after its last row: the next batch may be far off (a continuous job).
        if let Some(OpenPart { file: OpenFile::Parquet(file), .. }) = self.open.as_mut()
            && (is_full(self.policy.max_bytes, file)? || has_its_row_groups(self.policy.max_row_groups, file))
        {
            self.close(events)?;
        }
        Ok(())
    }
}

/// The part holds `max_row_groups` row groups written out: it ends before another row.
fn has_its_row_groups(max_row_groups: Option<u32>, file: &ParquetPart) -> bool {
    max_row_groups.is_some_and(|max| file.row_groups() >= max as usize)
}

/// The part has reached `retention.size` (`max_bytes`): on the estimate first (cheap), then
/// on the real size with the open row group written out.
fn is_full(max_bytes: Option<u64>, file: &mut ParquetPart) -> std::io::Result<bool> {
    Ok(match max_bytes {
        Some(max) => file.stored_bound(max)? >= max && file.settled_size()? >= max,
        None => false,
    })
}
