//! Boundary de-duplication for watermark streams.
//!
//! A run reads cursor values in `[after, to]`, both inclusive, so rows that
//! arrive later with a cursor equal to the last watermark are not lost. The
//! rows copied at exactly `to` are remembered as 64-bit hashes of their
//! whole content (every column, key included) and skipped next time when
//! they come back at the lower bound *unchanged*: a row updated without
//! moving its cursor (common with `date` or second-precision cursors) hashes
//! differently and is delivered again, so the update is not lost.
//!
//! State is bounded: at most [`BOUNDARY_LIMIT`] rows may share the boundary
//! value. Past that the run fails before anything is committed, naming the
//! value and the fix (a finer cursor, or change tracking), rather than
//! silently forgetting rows or growing without bound.
//!
//! The filter also removes the hidden cursor column the source appended.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, Schema, SchemaRef};
use highwater_core::{CURSOR_COLUMN, CursorValue, Error, Result, WatermarkPosition};

/// The default bound on rows sharing the boundary cursor value (about
/// 8 bytes each in memory and ~20 in the state store).
pub const BOUNDARY_LIMIT: usize = 1_000_000;

/// Filters batches of one watermark read and collects the new boundary.
pub struct BoundaryFilter {
    after: Option<CursorValue>,
    skip: BTreeSet<u64>,
    to: Option<CursorValue>,
    /// Columns hashed to recognise a row already delivered: all visible ones.
    content_cols: Vec<usize>,
    limit: usize,
    cursor_idx: usize,
    out_cols: Vec<usize>,
    out_schema: SchemaRef,
    seen_at_to: BTreeSet<u64>,
}

impl BoundaryFilter {
    /// `schema` is the source's (with the hidden cursor column); `limit`
    /// bounds the rows remembered at the boundary (see [`BOUNDARY_LIMIT`]).
    pub fn new(
        schema: &SchemaRef,
        after: Option<&WatermarkPosition>,
        to: Option<CursorValue>,
        limit: usize,
    ) -> Result<BoundaryFilter> {
        let cursor_idx = schema
            .index_of(CURSOR_COLUMN)
            .map_err(|_| Error::source("engine", "the source did not return the cursor column"))?;
        let out_cols: Vec<usize> = (0..schema.fields().len())
            .filter(|i| *i != cursor_idx)
            .collect();
        let out_schema = Arc::new(
            schema
                .project(&out_cols)
                .map_err(|e| Error::source("engine", e))?,
        );
        // The watermark never moves back: with no row in range (`to` is None,
        // e.g. every row is newer than a held-back bound) or a bound below
        // the last watermark (a larger `lag`), the position stays where it
        // is, boundary keys included.
        let after_value = after.and_then(|a| a.value.clone());
        let to = match (to, &after_value) {
            (None, Some(a)) => Some(a.clone()),
            (Some(t), Some(a)) if t.compare(a) == Some(std::cmp::Ordering::Less) => Some(a.clone()),
            (to, _) => to,
        };
        Ok(BoundaryFilter {
            after: after.and_then(|a| a.value.clone()),
            skip: after.map(|a| a.boundary.clone()).unwrap_or_default(),
            to,
            content_cols: out_cols.clone(),
            limit,
            cursor_idx,
            out_cols,
            out_schema,
            seen_at_to: BTreeSet::new(),
        })
    }

    /// The schema of the filtered batches (without the cursor column).
    pub fn schema(&self) -> SchemaRef {
        self.out_schema.clone()
    }

    /// Drop rows copied already at the lower bound; remember rows at `to`.
    pub fn apply(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let cursor = batch.column(self.cursor_idx);
        let n = batch.num_rows();
        let eq_after = equal_mask(cursor, self.after.as_ref())?;
        let eq_to = equal_mask(cursor, self.to.as_ref())?;
        let mut keep = vec![true; n];
        let mut any_dropped = false;
        if eq_after.iter().any(|b| *b) || eq_to.iter().any(|b| *b) {
            let formatters = self.key_formatters(batch)?;
            for row in 0..n {
                if !(eq_after[row] || eq_to[row]) {
                    continue;
                }
                let h = row_hash(&formatters, row);
                if eq_after[row] && self.skip.contains(&h) {
                    keep[row] = false;
                    any_dropped = true;
                    continue;
                }
                if eq_to[row] {
                    self.seen_at_to.insert(h);
                    if self.seen_at_to.len() > self.limit {
                        return Err(self.over_limit());
                    }
                }
            }
        }
        let projected = batch
            .project(&self.out_cols)
            .map_err(|e| Error::source("engine", e))?;
        if !any_dropped {
            return Ok(projected);
        }
        let mask = BooleanArray::from(keep);
        arrow_select::filter::filter_record_batch(&projected, &mask)
            .map_err(|e| Error::source("engine", e))
    }

    fn over_limit(&self) -> Error {
        let value = self.to.as_ref().map(|v| v.to_string()).unwrap_or_default();
        Error::data(format!(
            "more than {} rows share the cursor value {value}: highwater remembers which rows at \
             the boundary it delivered, and that many would make the state too large. Use a finer \
             cursor (a timestamp with fractional seconds, or an increasing integer), or \
             `mode: change_tracking`. Nothing was committed",
            self.limit
        ))
    }

    fn key_formatters<'a>(&self, batch: &'a RecordBatch) -> Result<Vec<ArrayFormatter<'a>>> {
        let opts = FormatOptions::default().with_null("\u{0}NULL");
        self.content_cols
            .iter()
            .map(|i| {
                ArrayFormatter::try_new(batch.column(*i).as_ref(), &opts)
                    .map_err(|e| Error::source("engine", e))
            })
            .collect()
    }

    /// The position after this read: `to`, and the rows seen at `to`
    /// (plus the old boundary when `to` did not move).
    pub fn finish(self, null_rows: u64) -> WatermarkPosition {
        let mut boundary = self.seen_at_to;
        if self.to.is_some() && self.to == self.after {
            boundary.extend(self.skip);
        }
        WatermarkPosition {
            value: self.to.or(self.after),
            boundary,
            null_rows,
        }
    }
}

/// Which rows of a watermark read (a full load: `after = None`, the hidden
/// cursor column last) a stream at `pos` has delivered already: a cursor
/// below `pos.value`, or equal to it and in its boundary. `None`: a NULL
/// cursor (copied by the first, full load only). Used by `verify`, so that
/// rows not yet due are not counted missing.
pub fn delivered(batch: &RecordBatch, pos: &WatermarkPosition) -> Result<Vec<Option<bool>>> {
    let idx = batch
        .schema()
        .index_of(CURSOR_COLUMN)
        .map_err(|_| Error::source("engine", "the source did not return the cursor column"))?;
    let cursor = batch.column(idx);
    let n = batch.num_rows();
    let Some(value) = pos.value.as_ref() else {
        // Nothing with a cursor was delivered yet.
        return Ok((0..n)
            .map(|r| (!cursor.is_null(r)).then_some(false))
            .collect());
    };
    let eq = equal_mask(cursor, Some(value))?;
    let content: Vec<usize> = (0..batch.num_columns()).filter(|i| *i != idx).collect();
    let opts = FormatOptions::default().with_null("\u{0}NULL");
    let formatters = content
        .iter()
        .map(|i| {
            ArrayFormatter::try_new(batch.column(*i).as_ref(), &opts)
                .map_err(|e| Error::source("engine", e))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(n);
    for (row, at_value) in eq.iter().enumerate() {
        if cursor.is_null(row) {
            out.push(None);
        } else if *at_value {
            out.push(Some(pos.boundary.contains(&row_hash(&formatters, row))));
        } else {
            out.push(Some(below(cursor, row, value)?));
        }
    }
    Ok(out)
}

/// Is the (non-NULL) cursor at `row` below `v`?
fn below(col: &ArrayRef, row: usize, v: &CursorValue) -> Result<bool> {
    let int = match col.data_type() {
        DataType::Int16 => Some(col.as_primitive::<Int16Type>().value(row) as i64),
        DataType::Int32 => Some(col.as_primitive::<Int32Type>().value(row) as i64),
        DataType::Int64 => Some(col.as_primitive::<Int64Type>().value(row)),
        DataType::Date32 => Some(col.as_primitive::<Date32Type>().value(row) as i64),
        DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _) => {
            Some(col.as_primitive::<TimestampMicrosecondType>().value(row))
        }
        _ => None,
    };
    match (v, int) {
        (
            CursorValue::Int(i) | CursorValue::Timestamp(i) | CursorValue::TimestampTz(i),
            Some(x),
        ) => Ok(x < *i),
        (CursorValue::Date(d), Some(x)) => Ok(x < *d as i64),
        (CursorValue::Text(t), None) if col.data_type() == &DataType::Utf8 => {
            Ok(col.as_string::<i32>().value(row) < t.as_str())
        }
        _ => Err(Error::source(
            "engine",
            format!(
                "unexpected cursor type {} for a {} watermark",
                col.data_type(),
                v.type_name()
            ),
        )),
    }
}

/// FNV-1a over the display form of the row's columns; stable across versions.
fn row_hash(formatters: &[ArrayFormatter<'_>], row: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for f in formatters {
        for b in f
            .value(row)
            .to_string()
            .bytes()
            .chain(std::iter::once(0x1f))
        {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Which rows have a cursor equal to `v`.
fn equal_mask(col: &ArrayRef, v: Option<&CursorValue>) -> Result<Vec<bool>> {
    let n = col.len();
    let Some(v) = v else {
        return Ok(vec![false; n]);
    };
    let ints = |target: i64| -> Result<Vec<bool>> {
        let vals: Vec<Option<i64>> = match col.data_type() {
            DataType::Int16 => col
                .as_primitive::<Int16Type>()
                .iter()
                .map(|x| x.map(i64::from))
                .collect(),
            DataType::Int32 => col
                .as_primitive::<Int32Type>()
                .iter()
                .map(|x| x.map(i64::from))
                .collect(),
            DataType::Int64 => col.as_primitive::<Int64Type>().iter().collect(),
            DataType::Date32 => col
                .as_primitive::<Date32Type>()
                .iter()
                .map(|x| x.map(i64::from))
                .collect(),
            DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _) => col
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .collect(),
            other => {
                return Err(Error::source(
                    "engine",
                    format!("unexpected cursor type {other}"),
                ));
            }
        };
        Ok(vals.into_iter().map(|x| x == Some(target)).collect())
    };
    match v {
        CursorValue::Int(i) | CursorValue::Timestamp(i) | CursorValue::TimestampTz(i) => ints(*i),
        CursorValue::Date(d) => ints(*d as i64),
        CursorValue::Text(t) => match col.data_type() {
            DataType::Utf8 => Ok(col
                .as_string::<i32>()
                .iter()
                .map(|x| x == Some(t.as_str()))
                .collect()),
            other => Err(Error::source(
                "engine",
                format!("unexpected cursor type {other} for a text watermark"),
            )),
        },
    }
}

/// Schema without the hidden cursor column (for sinks when nothing is filtered).
pub fn visible_schema(schema: &Schema) -> Schema {
    Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| f.name() != CURSOR_COLUMN)
            .cloned()
            .collect::<Vec<_>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::Field;

    fn batch(ids: &[i64], cursors: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new(CURSOR_COLUMN, DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(
                    ids.iter().map(|i| format!("n{i}")).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(cursors.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn the_watermark_never_moves_back() {
        let limit = BOUNDARY_LIMIT;
        let b = batch(&[1, 2], &[7, 7]);
        let mut f =
            BoundaryFilter::new(&b.schema(), None, Some(CursorValue::Int(7)), limit).unwrap();
        f.apply(&b).unwrap();
        let p1 = f.finish(0);
        for to in [None, Some(CursorValue::Int(5))] {
            let empty = batch(&[], &[]);
            let mut f = BoundaryFilter::new(&empty.schema(), Some(&p1), to, limit).unwrap();
            assert_eq!(f.apply(&empty).unwrap().num_rows(), 0);
            assert_eq!(f.finish(0), p1, "position and boundary unchanged");
        }
    }

    #[test]
    fn ties_at_the_boundary_are_neither_lost_nor_repeated() {
        let limit = BOUNDARY_LIMIT;
        // Run 1: rows 1 (c=5), 2 (c=7), 3 (c=7); to = 7.
        let b1 = batch(&[1, 2, 3], &[5, 7, 7]);
        let mut f =
            BoundaryFilter::new(&b1.schema(), None, Some(CursorValue::Int(7)), limit).unwrap();
        assert_eq!(f.apply(&b1).unwrap().num_rows(), 3);
        let p1 = f.finish(0);
        assert_eq!(p1.boundary.len(), 2);
        // Run 2 reads [7, 7]: rows 2, 3 again plus a late row 4 at c=7.
        let b2 = batch(&[2, 3, 4], &[7, 7, 7]);
        let mut f =
            BoundaryFilter::new(&b2.schema(), Some(&p1), Some(CursorValue::Int(7)), limit).unwrap();
        let out = f.apply(&b2).unwrap();
        assert_eq!(out.num_rows(), 1);
        assert_eq!(out.column(0).as_primitive::<Int64Type>().value(0), 4);
        assert_eq!(out.num_columns(), 2, "cursor column removed");
        let p2 = f.finish(0);
        assert_eq!(
            p2.boundary.len(),
            3,
            "old boundary kept while the watermark stands still"
        );
        // Run 3 reads [7, 9]: only the new row 5.
        let b3 = batch(&[2, 3, 4, 5], &[7, 7, 7, 9]);
        let mut f =
            BoundaryFilter::new(&b3.schema(), Some(&p2), Some(CursorValue::Int(9)), limit).unwrap();
        assert_eq!(f.apply(&b3).unwrap().num_rows(), 1);
        let p3 = f.finish(0);
        assert_eq!(p3.boundary.len(), 1);
        assert_eq!(p3.value, Some(CursorValue::Int(9)));
    }

    fn batch_named(ids: &[i64], names: &[&str], cursors: &[i64]) -> RecordBatch {
        let b = batch(ids, cursors);
        RecordBatch::try_new(
            b.schema(),
            vec![
                b.column(0).clone(),
                Arc::new(StringArray::from(names.to_vec())),
                b.column(2).clone(),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_row_updated_without_moving_its_cursor_is_delivered_again() {
        let limit = BOUNDARY_LIMIT;
        let b1 = batch_named(&[1, 2], &["a", "b"], &[7, 7]);
        let mut f =
            BoundaryFilter::new(&b1.schema(), None, Some(CursorValue::Int(7)), limit).unwrap();
        assert_eq!(f.apply(&b1).unwrap().num_rows(), 2);
        let p1 = f.finish(0);
        // Row 1 changed its content at the same cursor value; row 3 is new.
        let b2 = batch_named(&[1, 2, 3], &["CHANGED", "b", "c"], &[7, 7, 7]);
        let mut f =
            BoundaryFilter::new(&b2.schema(), Some(&p1), Some(CursorValue::Int(7)), limit).unwrap();
        let out = f.apply(&b2).unwrap();
        let ids: Vec<i64> = out.column(0).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(
            ids,
            vec![1, 3],
            "the update and the new row, not the unchanged row"
        );
        let p2 = f.finish(0);
        // A third run with nothing new delivers nothing.
        let mut f =
            BoundaryFilter::new(&b2.schema(), Some(&p2), Some(CursorValue::Int(7)), limit).unwrap();
        assert_eq!(f.apply(&b2).unwrap().num_rows(), 0);
    }

    #[test]
    fn more_rows_at_the_boundary_than_the_limit_fail_loudly() {
        let b = batch(&[1, 2, 3], &[7, 7, 7]);
        let mut f = BoundaryFilter::new(&b.schema(), None, Some(CursorValue::Int(7)), 2).unwrap();
        let e = f.apply(&b).unwrap_err().to_string();
        assert!(
            e.contains("more than 2 rows share the cursor value 7"),
            "{e}"
        );
        assert!(e.contains("finer"), "{e}");
        // Below the limit the same rows pass.
        let mut f = BoundaryFilter::new(&b.schema(), None, Some(CursorValue::Int(7)), 3).unwrap();
        assert_eq!(f.apply(&b).unwrap().num_rows(), 3);
    }
}
