//! Dotted paths into JSON bodies (`data`, `meta.next_cursor`, `items.0.id`).
//! A segment indexes an object by key or an array by position; the empty path
//! is the value itself. Pure: no I/O.

use serde_json::Value;

/// The JSON pointer of a dotted path (`data.0` → `/data/0`).
fn pointer(path: &str) -> String {
    if path.is_empty() {
        return String::new();
    }
    path.split('.')
        .map(|part| format!("/{}", part.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// The value at `path`, if there is one.
pub(crate) fn get<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    value.pointer(&pointer(path))
}

/// Takes the value at `path` out of `value`; `None` when there is none.
pub(crate) fn take(mut value: Value, path: &str) -> Option<Value> {
    value.pointer_mut(&pointer(path)).map(Value::take)
}

/// The value at `path` as text, for ids, cursors and times: a non-empty string
/// or a number. Null, an empty string, a missing value or anything else is `None`.
pub(crate) fn text(value: &Value, path: &str) -> Option<String> {
    scalar_text(get(value, path)?)
}

/// A non-empty string or a number as text; `None` for anything else.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_reach_into_objects_and_arrays() {
        let v = json!({"data": [{"id": 7}], "meta": {"next": "abc", "empty": "", "none": null}, "a/b": {"c~d": 1}});
        assert_eq!(get(&v, ""), Some(&v));
        assert_eq!(get(&v, "data.0.id"), Some(&json!(7)));
        assert_eq!(get(&v, "data.1"), None);
        assert_eq!(get(&v, "meta.missing"), None);
        assert_eq!(get(&v, "a/b.c~d"), Some(&json!(1)));
        assert_eq!(text(&v, "meta.next").as_deref(), Some("abc"));
        assert_eq!(text(&v, "data.0.id").as_deref(), Some("7"));
        assert_eq!(text(&v, "meta.empty"), None);
        assert_eq!(text(&v, "meta.none"), None);
        assert_eq!(text(&v, "meta"), None);
        assert_eq!(take(v.clone(), "data"), Some(json!([{"id": 7}])));
        assert_eq!(take(v, "nope"), None);
    }
}
