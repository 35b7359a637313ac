//! What our JSON documents share on top of serde_json, which writes and escapes every one of them:
//! the compact text of a value, numbers rounded to the decimals a page shows, and an object from
//! key-value pairs kept in their order. No parsing here.

use serde::{Serialize, Serializer};

/// `value` as compact JSON. Our documents are structs, sequences, strings and numbers, which
/// serde_json cannot fail to write (it fails only on non-string map keys); were it to, the
/// answer is `null` and the error is logged.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| {
        log::error!("JSON: {e}");
        "null".into()
    })
}

/// `x` rounded to `decimals` places, as the old `{:.N}` formatting showed it (`2.04` -> `2.0`
/// with one). Non-finite values stay so, and serde_json writes them as `null`.
pub fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

/// A JSON object of `(key, value)` pairs in iteration order: for keys that are data (query
/// parameters, listener names), where a struct cannot name them.
pub struct Pairs<I>(pub I);

impl<I, K, V> Serialize for Pairs<I>
where
    I: Iterator<Item = (K, V)> + Clone,
    K: Serialize,
    V: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_and_numbers_round() {
        assert_eq!(to_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
        assert_eq!(to_string(&round(2.04, 1)), "2.0");
        assert_eq!(to_string(&round(25.0, 1)), "25.0");
        assert_eq!(to_string(&round(12.346, 2)), "12.35");
        assert_eq!(to_string(&round(-0.04, 1)), "-0.0");
        assert_eq!(to_string(&round(f64::NAN, 1)), "null");
        assert_eq!(to_string(&Some(round(f64::INFINITY, 1))), "null");
        assert_eq!(to_string(&None::<f64>), "null");
    }

    #[test]
    fn pairs_keep_their_order() {
        let v = [("z", 1), ("a", 2), ("z", 3)];
        assert_eq!(
            to_string(&Pairs(v.iter().map(|(k, n)| (k, n)))),
            "{\"z\":1,\"a\":2,\"z\":3}"
        );
        assert_eq!(to_string(&Pairs(std::iter::empty::<(&str, u8)>())), "{}");
    }
}
