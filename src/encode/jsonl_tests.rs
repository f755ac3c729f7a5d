use std::sync::Arc;

use datafusion::arrow::array::{
    BinaryArray, BooleanArray, Date32Array, Decimal128Array, DictionaryArray, Float32Array, Float64Array,
    Int8Array, Int64Array, NullArray, StringArray, StringViewArray, TimestampMicrosecondArray,
    TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{Field, Int32Type};
use proptest::prelude::*;

use super::*;

fn encode(columns: Vec<(&str, ArrayRef)>) -> Vec<String> {
    let schema = Arc::new(Schema::new(
        columns.iter().map(|(name, a)| Field::new(*name, a.data_type().clone(), true)).collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|(_, a)| a).collect()).unwrap();
    let mut encoder = JsonlEncoder::new(&schema);
    assert!(encoder.header().is_empty(), "JSON Lines has no header");
    let mut out = EncodedRows::default();
    encoder.rows(&batch, &mut out).unwrap();
    assert_eq!(out.len(), batch.num_rows());
    (0..out.len()).map(|i| String::from_utf8(out.row(i).to_vec()).unwrap()).collect()
}

#[test]
fn numbers_stay_numbers_and_keys_keep_column_order() {
    let rows = encode(vec![
        ("i", Arc::new(Int64Array::from(vec![Some(i64::MIN), Some(0), None])) as ArrayRef),
        ("u", Arc::new(UInt64Array::from(vec![u64::MAX, 1, 2]))),
        ("small", Arc::new(Int8Array::from(vec![-128, 7, 127]))),
        ("f", Arc::new(Float64Array::from(vec![0.1, f64::NAN, f64::NEG_INFINITY]))),
        ("f32", Arc::new(Float32Array::from(vec![0.1f32, f32::INFINITY, 1e30]))),
        ("b", Arc::new(BooleanArray::from(vec![Some(true), Some(false), None]))),
        ("d", Arc::new(Decimal128Array::from(vec![1230, -5, 0]).with_precision_and_scale(10, 2).unwrap())),
        ("n", Arc::new(NullArray::new(3))),
    ]);
    assert_eq!(
        rows[0],
        "{\"i\":-9223372036854775808,\"u\":18446744073709551615,\"small\":-128,\"f\":0.1,\"f32\":0.1,\"b\":true,\"d\":12.30,\"n\":null}\n"
    );
    assert_eq!(
        rows[1],
        "{\"i\":0,\"u\":1,\"small\":7,\"f\":null,\"f32\":null,\"b\":false,\"d\":-0.05,\"n\":null}\n"
    );
    assert_eq!(
        rows[2],
        "{\"i\":null,\"u\":2,\"small\":127,\"f\":null,\"f32\":1e30,\"b\":null,\"d\":0.00,\"n\":null}\n"
    );
    for row in &rows {
        let v: serde_json::Value = serde_json::from_str(row).unwrap();
        assert!(v.is_object());
    }
}

#[test]
fn times_are_iso_utc_dates_plain_and_binary_base64() {
    let at = 1_767_261_600i64; // 2026-01-01T10:00:00Z
    let rows = encode(vec![
        ("ms", Arc::new(TimestampMillisecondArray::from(vec![at * 1000 + 123, -1])) as ArrayRef),
        ("s", Arc::new(TimestampSecondArray::from(vec![at, 0]).with_timezone("+02:00"))),
        ("us", Arc::new(TimestampMicrosecondArray::from(vec![at * 1_000_000 + 5, 0]))),
        ("ns", Arc::new(TimestampNanosecondArray::from(vec![at * 1_000_000_000 + 7, 0]))),
        ("day", Arc::new(Date32Array::from(vec![20_454, 2_932_897]))),
        ("bin", Arc::new(BinaryArray::from(vec![&b"\x00\xffhi"[..], b""]))),
    ]);
    assert_eq!(
        rows[0],
        "{\"ms\":\"2026-01-01T10:00:00.123Z\",\"s\":\"2026-01-01T10:00:00.000Z\",\"us\":\"2026-01-01T10:00:00.000005Z\",\
         \"ns\":\"2026-01-01T10:00:00.000000007Z\",\"day\":\"2026-01-01\",\"bin\":\"AP9oaQ==\"}\n"
    );
    // Before the epoch, and a date past year 9999 (chrono's expanded form).
    assert_eq!(
        rows[1],
        "{\"ms\":\"1969-12-31T23:59:59.999Z\",\"s\":\"1970-01-01T00:00:00.000Z\",\"us\":\"1970-01-01T00:00:00.000000Z\",\
         \"ns\":\"1970-01-01T00:00:00.000000000Z\",\"day\":\"+10000-01-01\",\"bin\":\"\"}\n"
    );
}

#[test]
fn strings_are_escaped_and_other_types_are_their_text() {
    let dict: DictionaryArray<Int32Type> = vec!["GET", "POST"].into_iter().collect();
    let rows = encode(vec![
        (
            "we\"ird\nkey",
            Arc::new(StringArray::from(vec!["a\"b\\c\nd\u{1}\u{2028}\u{2029}é😀", "plain"])) as ArrayRef,
        ),
        ("view", Arc::new(StringViewArray::from(vec!["tab\there", "x"]))),
        ("method", Arc::new(dict)),
    ]);
    assert_eq!(
        rows[0],
        "{\"we\\\"ird\\nkey\":\"a\\\"b\\\\c\\nd\\u0001\\u2028\\u2029é😀\",\"view\":\"tab\\there\",\"method\":\"GET\"}\n"
    );
    assert_eq!(rows[1], "{\"we\\\"ird\\nkey\":\"plain\",\"view\":\"x\",\"method\":\"POST\"}\n");
}

proptest! {
    #[test]
    fn any_string_round_trips_through_a_json_parser(s in any::<String>()) {
        let mut out = Vec::new();
        push_json_str(&mut out, s.as_bytes());
        let text = String::from_utf8(out).unwrap();
        prop_assert!(!text.contains(['\u{2028}', '\u{2029}']), "U+2028 and U+2029 are escaped");
        prop_assert!(!text.bytes().any(|b| b < 0x20), "no raw control character");
        let back: String = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back, s);
    }
}
