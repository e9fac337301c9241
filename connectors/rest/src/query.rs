//! Query strings: templates with a `{since}` placeholder and URL assembly.
//! Pure: no I/O.

use weir_sdk::http_util::encode;

/// The placeholder of query templates, replaced by the cursor time.
pub(crate) const SINCE: &str = "{since}";

/// Expands a query template (`change_filter`, `change_params`, `deletes.query`)
/// into encoded `key=value` pairs: in each value `{since}` is replaced by
/// `since`, then the whole value is percent-encoded, so JSON filters can be
/// written as they are (`filter={"date_updated":{"_gt":"{since}"}}`). Keys are
/// kept as written (`filter[date_updated][_gt]`). Empty pairs are dropped; a
/// pair without `=` is kept as it is.
pub(crate) fn expand(template: &str, since: &str) -> Vec<String> {
    template
        .trim_start_matches(['?', '&'])
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => format!("{key}={}", encode(&value.replace(SINCE, since))),
            None => pair.to_string(),
        })
        .collect()
}

/// The query pairs that look for a record with these field values: the
/// `find` template (`{field}={value}`, `filter[{field}][_eq]={value}`) once
/// per field, the field name put in as written and the value's text
/// percent-encoded.
pub(crate) fn find(template: &str, fields: &[(String, String)]) -> Vec<String> {
    let template = template.trim_start_matches(['?', '&']);
    fields
        .iter()
        .map(|(field, value)| match template.split_once('=') {
            Some((key, v)) => format!(
                "{}={}",
                key.replace("{field}", field),
                v.replace("{field}", field)
                    .replace("{value}", &encode(value))
            ),
            None => template.replace("{field}", field),
        })
        .collect()
}

/// Encodes `key=value` pairs; keys are kept as written, values percent-encoded.
pub(crate) fn pairs(pairs: &[(String, String)]) -> Vec<String> {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect()
}

/// Appends encoded pairs to a URL, after its own query if it has one.
pub(crate) fn append(url: &str, parts: &[String]) -> String {
    let parts: Vec<&str> = parts
        .iter()
        .map(String::as_str)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        return url.to_string();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{}", parts.join("&"))
}

#[cfg(test)]
mod find_tests {
    use super::*;

    #[test]
    fn find_pairs_name_each_field_and_encode_its_value() {
        let fields = vec![("email".to_string(), "ann+1@example.com".to_string())];
        assert_eq!(
            find("{field}={value}", &fields),
            vec!["email=ann%2B1%40example.com"]
        );
        assert_eq!(
            find("filter[{field}][_eq]={value}", &fields),
            vec!["filter[email][_eq]=ann%2B1%40example.com"]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directus_filter_is_encoded_whole_with_the_time_inside() {
        let template = r#"filter={"_or":[{"date_updated":{"_gt":"{since}"}},{"date_created":{"_gt":"{since}"}}]}&sort=date_updated,id"#;
        let parts = expand(template, "2026-11-22T07:30:00.123Z");
        assert_eq!(
            parts,
            [
                "filter=%7B%22_or%22%3A%5B%7B%22date_updated%22%3A%7B%22_gt%22%3A%222026-11-22T07%3A30%3A00.123Z%22%7D%7D%2C%7B%22date_created%22%3A%7B%22_gt%22%3A%222026-11-22T07%3A30%3A00.123Z%22%7D%7D%5D%7D",
                "sort=date_updated%2Cid",
            ]
        );
    }

    #[test]
    fn bracketed_keys_stay_and_values_are_encoded() {
        let parts = expand(
            "?filter[collection][_eq]=contacts&&filter[timestamp][_gt]={since}&meta",
            "2026-01-01T00:00:00+01:00",
        );
        assert_eq!(
            parts,
            [
                "filter[collection][_eq]=contacts",
                "filter[timestamp][_gt]=2026-01-01T00%3A00%3A00%2B01%3A00",
                "meta",
            ]
        );
        assert!(expand("", "x").is_empty());
    }

    #[test]
    fn pairs_are_appended_after_an_existing_query() {
        let q = pairs(&[("_page".into(), "2".into()), ("q".into(), "a b".into())]);
        assert_eq!(append("http://h/c", &q), "http://h/c?_page=2&q=a%20b");
        assert_eq!(
            append("http://h/c?x=1", &q),
            "http://h/c?x=1&_page=2&q=a%20b"
        );
        assert_eq!(append("http://h/c", &[]), "http://h/c");
    }
}
