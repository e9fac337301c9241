//! The content hash of a canonical record, independent of key order.

use super::Record;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The content hash of a canonical record, independent of key order.
pub fn hash(record: &Record) -> [u8; 16] {
    let mut keys: Vec<&String> = record.keys().collect();
    keys.sort();
    let mut h = Sha256::new();
    for k in keys {
        h.update(k.as_bytes());
        h.update([0]);
        feed_canonical(&mut h, &record[k]);
        h.update([0]);
    }
    let full: [u8; 32] = h.finalize().into();
    full[..16].try_into().expect("16 of 32 bytes")
}

/// Feeds the hasher a value's canonical JSON text (object keys sorted at
/// every depth) without building the text.
fn feed_canonical(h: &mut Sha256, v: &Value) {
    /// `io::Write` into the hasher, for serde_json's writer.
    struct Into<'a>(&'a mut Sha256);
    impl std::io::Write for Into<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            h.update(b"{");
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    h.update(b",");
                }
                // Writing JSON into a hasher cannot fail.
                let _ = serde_json::to_writer(Into(h), k);
                h.update(b":");
                feed_canonical(h, &m[k]);
            }
            h.update(b"}");
        }
        Value::Array(a) => {
            h.update(b"[");
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    h.update(b",");
                }
                feed_canonical(h, x);
            }
            h.update(b"]");
        }
        other => {
            let _ = serde_json::to_writer(Into(h), other);
        }
    }
}

/// A value's JSON text with object keys sorted at every depth.
#[cfg(test)]
fn canonical_value(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        Value::String((*k).clone()),
                        canonical_value(&m[*k])
                    )
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical_value).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash streams the same bytes as the canonical text: stores keep
    /// their hashes across versions.
    #[test]
    fn streamed_hash_matches_the_canonical_text() {
        let record: Record = serde_json::from_str(
            r#"{"b":[1,{"z":"q\"x","a":null}],"a":"é\n","c":{"y":2.5,"x":true}}"#,
        )
        .unwrap();
        let mut keys: Vec<&String> = record.keys().collect();
        keys.sort();
        let mut h = Sha256::new();
        for k in keys {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(canonical_value(&record[k]).as_bytes());
            h.update([0]);
        }
        let full: [u8; 32] = h.finalize().into();
        assert_eq!(hash(&record)[..], full[..16]);
    }
}
