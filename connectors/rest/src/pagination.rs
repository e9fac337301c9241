//! Pagination styles: where a listing stands ([`Position`], kept in the
//! cursors handed to the host), what the next request asks for, and where the
//! listing stands after a response. Pure: no I/O.

use crate::config::Pagination;
use crate::paths;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where the next request of a listing starts; `None` stands for the first
/// request. Serialized as `{"page":2}`, `{"offset":200}`, `{"cursor":"abc"}`
/// or `{"link":"https://..."}`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Position {
    /// A page number.
    Page(u64),
    /// The number of records to skip.
    Offset(u64),
    /// The cursor the last response named.
    Cursor(String),
    /// The URL the last response's `Link` header named `next`.
    Link(String),
}

impl Position {
    /// Parses a read cursor: a position as JSON, or a bare page number
    /// (what earlier versions of this connector handed out).
    pub(crate) fn parse(text: &str) -> Result<Position, String> {
        if let Ok(page) = text.trim().parse::<u64>() {
            return Ok(Position::Page(page));
        }
        serde_json::from_str(text).map_err(|e| format!("bad read cursor '{text}': {e}"))
    }

    fn style(&self) -> &'static str {
        match self {
            Position::Page(_) => "page",
            Position::Offset(_) => "offset",
            Position::Cursor(_) => "cursor",
            Position::Link(_) => "link",
        }
    }
}

fn style_of(p: &Pagination) -> &'static str {
    match p {
        Pagination::Page { .. } => "page",
        Pagination::Offset { .. } => "offset",
        Pagination::Cursor { .. } => "cursor",
        Pagination::Link => "link",
    }
}

/// What the next request of a listing is.
#[derive(Debug, PartialEq)]
pub(crate) enum Request {
    /// The collection URL with the caller's filters and these query pairs.
    Query(Vec<(String, String)>),
    /// This URL, verbatim (a `Link` header's `next`).
    Url(String),
}

/// The request at `at` for pages of `size` records.
pub(crate) fn request(
    pagination: &Pagination,
    limit_param: &str,
    at: Option<&Position>,
    size: u32,
) -> Result<Request, String> {
    let limit = (limit_param.to_string(), size.to_string());
    Ok(match (pagination, at) {
        (Pagination::Page { param, first }, None) => {
            Request::Query(vec![(param.clone(), first.to_string()), limit])
        }
        (Pagination::Page { param, .. }, Some(Position::Page(page))) => {
            Request::Query(vec![(param.clone(), page.to_string()), limit])
        }
        (Pagination::Offset { param }, None) => {
            Request::Query(vec![(param.clone(), "0".into()), limit])
        }
        (Pagination::Offset { param }, Some(Position::Offset(offset))) => {
            Request::Query(vec![(param.clone(), offset.to_string()), limit])
        }
        (Pagination::Cursor { .. } | Pagination::Link, None) => Request::Query(vec![limit]),
        (Pagination::Cursor { param, .. }, Some(Position::Cursor(cursor))) => {
            Request::Query(vec![(param.clone(), cursor.clone()), limit])
        }
        (Pagination::Link, Some(Position::Link(url))) => Request::Url(url.clone()),
        (p, Some(other)) => {
            return Err(format!(
                "the stored cursor was made for pagination = \"{}\" but the system now uses \"{}\"; start over with a full read (weir sync --full)",
                other.style(),
                style_of(p)
            ))
        }
    })
}

/// What a list response says about the next page.
pub(crate) struct Response<'a> {
    /// The URL that was requested (relative `Link` URLs are resolved against it).
    pub url: &'a str,
    /// The number of records it held.
    pub count: usize,
    /// The whole body (for `next_cursor`).
    pub body: &'a Value,
    /// The values of its `Link` headers.
    pub links: Vec<&'a str>,
}

/// What in a list response says it is the last page, besides the style's
/// own signal (config `last_page_flag`, `more_path`, `total_path`), and
/// where the body names the next page's URL (`next_link`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Ends {
    /// Dotted path of a boolean, true on the last page.
    pub last_page_flag: Option<String>,
    /// Dotted path of a value that is null, false, empty or missing on the
    /// last page.
    pub more_path: Option<String>,
    /// Dotted path of the number of records of the whole listing.
    pub total_path: Option<String>,
    /// Dotted path of the next page's URL in the body (link style).
    pub next_link: Option<String>,
}

impl Ends {
    /// Whether any end signal is configured.
    fn any(&self) -> bool {
        self.last_page_flag.is_some() || self.more_path.is_some() || self.total_path.is_some()
    }

    /// Whether `response` is the last page by the configured signals;
    /// `seen` is the number of records listed so far, this page included,
    /// where the style knows it.
    fn last(&self, response: &Response, seen: Option<u64>) -> Result<bool, String> {
        let url = response.url;
        if let Some(path) = &self.last_page_flag {
            match paths::get(response.body, path) {
                Some(Value::Bool(true)) => return Ok(true),
                Some(Value::Bool(false)) => {}
                other => {
                    return Err(format!(
                        "{url}: expected a boolean at '{path}' (config last_page_flag), found {}; set it to the dotted path of the flag that is true on the last page",
                        other.map_or("nothing", weir_sdk::json::kind_of)
                    ))
                }
            }
        }
        if let Some(path) = &self.more_path {
            match paths::get(response.body, path) {
                None | Some(Value::Null) | Some(Value::Bool(false)) => return Ok(true),
                Some(Value::String(s)) if s.is_empty() => return Ok(true),
                Some(_) => {}
            }
        }
        if let (Some(path), Some(seen)) = (&self.total_path, seen) {
            let total = paths::get(response.body, path).and_then(|v| match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            });
            match total {
                Some(total) if seen >= total => return Ok(true),
                Some(_) => {}
                None => {
                    return Err(format!(
                        "{url}: expected a number of records at '{path}' (config total_path); set it to the dotted path of the listing's total"
                    ))
                }
            }
        }
        Ok(false)
    }
}

/// Where the listing stands after `response`, the answer to the request at
/// `at` for pages of `size` records; `None` when it is complete. An empty
/// page or a configured end signal ([`Ends`]) ends any style; without
/// signals, page and offset styles go on while pages are full; cursor and
/// link styles go on while the response names a next cursor or link.
pub(crate) fn next(
    pagination: &Pagination,
    ends: &Ends,
    at: Option<&Position>,
    size: u32,
    response: &Response,
) -> Result<Option<Position>, String> {
    let signalled = ends.any();
    if signalled {
        let seen = match (pagination, at) {
            (Pagination::Page { first, .. }, Some(Position::Page(p))) => {
                Some(p.saturating_sub(*first) * u64::from(size) + response.count as u64)
            }
            (Pagination::Page { .. } | Pagination::Offset { .. }, None) => {
                Some(response.count as u64)
            }
            (Pagination::Offset { .. }, Some(Position::Offset(o))) => {
                Some(o + response.count as u64)
            }
            _ => None,
        };
        if response.count == 0 || ends.last(response, seen)? {
            return Ok(None);
        }
    }
    // With an end signal, a page shorter than asked is not the last (the API
    // may cap its pages).
    let full = signalled || response.count >= size.max(1) as usize;
    Ok(match pagination {
        Pagination::Page { first, .. } => {
            let page = match at {
                Some(Position::Page(p)) => *p,
                _ => *first,
            };
            full.then(|| Position::Page(page + 1))
        }
        Pagination::Offset { .. } => {
            let offset = match at {
                Some(Position::Offset(o)) => *o,
                _ => 0,
            };
            full.then(|| Position::Offset(offset + response.count as u64))
        }
        Pagination::Cursor { next, .. } => match paths::text(response.body, next) {
            None => None,
            Some(cursor) if at == Some(&Position::Cursor(cursor.clone())) => {
                return Err(format!(
                    "{}: the next cursor at '{next}' (config next_cursor) is the one just used, '{cursor}'; check that next_cursor names the cursor of the next page",
                    response.url
                ))
            }
            Some(cursor) => Some(Position::Cursor(cursor)),
        },
        Pagination::Link => match ends.next_link.as_deref().map_or_else(
            || next_link(response.links.iter().copied()),
            |path| paths::text(response.body, path),
        ) {
            None => None,
            Some(link) => {
                let url = resolve(response.url, &link);
                if url == response.url {
                    return Err(format!(
                        "{url}: the Link header names this same URL as the next page; the API does not page with Link headers, set config pagination to another style"
                    ));
                }
                Some(Position::Link(url))
            }
        },
    })
}

/// The URL of the first `rel="next"` link in `Link` header values
/// (RFC 8288: `<url>; rel="next", <url>; rel="last"`), as written.
pub(crate) fn next_link<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    values
        .flat_map(parse_link)
        .find(|(_, rels)| rels.iter().any(|r| r.eq_ignore_ascii_case("next")))
        .map(|(url, _)| url)
}

/// The links of one `Link` header value, each with its relation types.
fn parse_link(value: &str) -> Vec<(String, Vec<String>)> {
    let mut links = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else { break };
        let url = after[..end].trim().to_string();
        rest = &after[end + 1..];
        // The parameters run to the next comma outside quotes.
        let mut quoted = false;
        let cut = rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    quoted = !quoted;
                }
                c == ',' && !quoted
            })
            .map_or(rest.len(), |(i, _)| i);
        let rels = rest[..cut]
            .split(';')
            .filter_map(|param| {
                let (key, value) = param.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("rel")
                    .then(|| value.trim().trim_matches('"'))
            })
            .flat_map(str::split_whitespace)
            .map(String::from)
            .collect();
        links.push((url, rels));
        rest = &rest[cut..];
    }
    links
}

/// Resolves a link against the URL of the response that named it: absolute
/// URLs are kept verbatim; `//host/...`, `/path`, `?query` and relative paths
/// are completed from `base`.
pub(crate) fn resolve(base: &str, link: &str) -> String {
    let lower = link.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return link.to_string();
    }
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority..]
        .find(['/', '?', '#'])
        .map_or(base.len(), |i| authority + i);
    let without_query = base.split(['?', '#']).next().unwrap_or(base);
    if link.starts_with("//") {
        format!("{}{link}", &base[..authority.saturating_sub(2)])
    } else if link.starts_with('/') {
        format!("{}{link}", &base[..path_start])
    } else if link.starts_with('?') {
        format!("{without_query}{link}")
    } else {
        let dir_end = without_query
            .rfind('/')
            .filter(|&i| i >= path_start)
            .map_or(without_query.len(), |i| i);
        format!("{}/{link}", &without_query[..dir_end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page() -> Pagination {
        Pagination::Page {
            param: "_page".into(),
            first: 1,
        }
    }

    fn offset() -> Pagination {
        Pagination::Offset {
            param: "offset".into(),
        }
    }

    fn cursor() -> Pagination {
        Pagination::Cursor {
            param: "cursor".into(),
            next: "meta.next_cursor".into(),
        }
    }

    /// [`next`] without end signals.
    fn next(
        p: &Pagination,
        at: Option<&Position>,
        size: u32,
        r: &Response,
    ) -> Result<Option<Position>, String> {
        super::next(p, &Ends::default(), at, size, r)
    }

    fn q(pairs: &[(&str, &str)]) -> Request {
        Request::Query(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn response<'a>(count: usize, body: &'a Value, links: Vec<&'a str>) -> Response<'a> {
        Response {
            url: "https://api.example.com/v1/contacts?limit=2",
            count,
            body,
            links,
        }
    }

    #[test]
    fn requests_carry_the_position_of_each_style() {
        let cases: Vec<(Pagination, Option<Position>, Request)> = vec![
            (page(), None, q(&[("_page", "1"), ("_limit", "50")])),
            (
                Pagination::Page {
                    param: "page".into(),
                    first: 0,
                },
                None,
                q(&[("page", "0"), ("_limit", "50")]),
            ),
            (
                page(),
                Some(Position::Page(3)),
                q(&[("_page", "3"), ("_limit", "50")]),
            ),
            (offset(), None, q(&[("offset", "0"), ("_limit", "50")])),
            (
                offset(),
                Some(Position::Offset(100)),
                q(&[("offset", "100"), ("_limit", "50")]),
            ),
            (cursor(), None, q(&[("_limit", "50")])),
            (
                cursor(),
                Some(Position::Cursor("c2".into())),
                q(&[("cursor", "c2"), ("_limit", "50")]),
            ),
            (Pagination::Link, None, q(&[("_limit", "50")])),
            (
                Pagination::Link,
                Some(Position::Link("https://h/x?page=2".into())),
                Request::Url("https://h/x?page=2".into()),
            ),
        ];
        for (pagination, at, expected) in cases {
            assert_eq!(
                request(&pagination, "_limit", at.as_ref(), 50).unwrap(),
                expected,
                "{pagination:?} at {at:?}"
            );
        }
        let err = request(&offset(), "_limit", Some(&Position::Page(2)), 50).unwrap_err();
        assert!(
            err.contains("made for pagination = \"page\" but the system now uses \"offset\""),
            "{err}"
        );
    }

    #[test]
    fn page_and_offset_styles_go_on_while_pages_are_full() {
        let body = json!([]);
        assert_eq!(
            next(&page(), None, 2, &response(2, &body, vec![])).unwrap(),
            Some(Position::Page(2))
        );
        assert_eq!(
            next(
                &page(),
                Some(&Position::Page(2)),
                2,
                &response(1, &body, vec![])
            )
            .unwrap(),
            None
        );
        assert_eq!(
            next(&offset(), None, 2, &response(2, &body, vec![])).unwrap(),
            Some(Position::Offset(2))
        );
        assert_eq!(
            next(
                &offset(),
                Some(&Position::Offset(2)),
                2,
                &response(2, &body, vec![])
            )
            .unwrap(),
            Some(Position::Offset(4))
        );
        assert_eq!(
            next(&offset(), None, 2, &response(0, &body, vec![])).unwrap(),
            None
        );
    }

    #[test]
    fn the_cursor_style_follows_next_cursor_until_it_is_absent_null_or_empty() {
        let more = json!({"data": [1, 2], "meta": {"next_cursor": "c2"}});
        assert_eq!(
            next(&cursor(), None, 2, &response(2, &more, vec![])).unwrap(),
            Some(Position::Cursor("c2".into()))
        );
        let numeric = json!({"meta": {"next_cursor": 40}});
        assert_eq!(
            next(&cursor(), None, 2, &response(1, &numeric, vec![])).unwrap(),
            Some(Position::Cursor("40".into()))
        );
        for done in [
            json!({"meta": {}}),
            json!({"meta": {"next_cursor": null}}),
            json!({"meta": {"next_cursor": ""}}),
        ] {
            assert_eq!(
                next(&cursor(), None, 2, &response(2, &done, vec![])).unwrap(),
                None
            );
        }
        let err = next(
            &cursor(),
            Some(&Position::Cursor("c2".into())),
            2,
            &response(2, &more, vec![]),
        )
        .unwrap_err();
        assert!(err.contains("is the one just used"), "{err}");
    }

    #[test]
    fn the_link_style_follows_rel_next() {
        let body = json!([]);
        let links = vec![
            r#"<https://api.example.com/v1/contacts?page=1>; rel="first""#,
            r#"<https://api.example.com/v1/contacts?sort=a,b&page=3>; rel="next", <https://api.example.com/v1/contacts?page=9>; rel="last""#,
        ];
        assert_eq!(
            next(&Pagination::Link, None, 2, &response(2, &body, links)).unwrap(),
            Some(Position::Link(
                "https://api.example.com/v1/contacts?sort=a,b&page=3".into()
            ))
        );
        assert_eq!(
            next(
                &Pagination::Link,
                None,
                2,
                &response(2, &body, vec![r#"<https://h/x?page=9>; rel="last""#])
            )
            .unwrap(),
            None
        );
        let same = vec![r#"<https://api.example.com/v1/contacts?limit=2>; rel=next"#];
        assert!(next(&Pagination::Link, None, 2, &response(2, &body, same)).is_err());
    }

    #[test]
    fn a_flag_a_total_or_a_next_value_ends_a_listing_whatever_the_page_length() {
        let flag = Ends {
            last_page_flag: Some("pageInfo.isLastPage".into()),
            ..Ends::default()
        };
        let more = json!({"list": [1, 2], "pageInfo": {"isLastPage": false, "totalRows": 4}});
        let last = json!({"list": [3, 4], "pageInfo": {"isLastPage": true, "totalRows": 4}});
        // A full last page is the last: no request past the end.
        assert_eq!(
            super::next(&offset(), &flag, None, 2, &response(2, &last, vec![])),
            Ok(None)
        );
        // A short page that is not the last goes on (a capped page size).
        assert_eq!(
            super::next(&offset(), &flag, None, 5, &response(2, &more, vec![])),
            Ok(Some(Position::Offset(2)))
        );
        let total = Ends {
            total_path: Some("pageInfo.totalRows".into()),
            ..Ends::default()
        };
        assert_eq!(
            super::next(
                &page(),
                &total,
                Some(&Position::Page(2)),
                2,
                &response(2, &more, vec![])
            ),
            Ok(None)
        );
        assert_eq!(
            super::next(&page(), &total, None, 2, &response(2, &more, vec![])),
            Ok(Some(Position::Page(2)))
        );
        let next_page = Ends {
            more_path: Some("next".into()),
            ..Ends::default()
        };
        for (body, expected) in [
            (json!({"data": [1], "next": 3}), Some(Position::Page(3))),
            (json!({"data": [1], "next": null}), None),
            (json!({"data": [1]}), None),
            (json!({"data": [1], "has_more": true, "next": false}), None),
        ] {
            assert_eq!(
                super::next(
                    &page(),
                    &next_page,
                    Some(&Position::Page(2)),
                    1,
                    &response(1, &body, vec![])
                ),
                Ok(expected),
                "{body}"
            );
        }
        // An empty page ends, and a flag that is not there is an error naming it.
        assert_eq!(
            super::next(&offset(), &flag, None, 2, &response(0, &more, vec![])),
            Ok(None)
        );
        let err = super::next(
            &offset(),
            &flag,
            None,
            2,
            &response(2, &json!([1, 2]), vec![]),
        )
        .unwrap_err();
        assert!(err.contains("expected a boolean at 'pageInfo.isLastPage' (config last_page_flag), found nothing"), "{err}");
        // The next page's URL in the body, for the link style.
        let body_link = Ends {
            next_link: Some("next".into()),
            ..Ends::default()
        };
        let drf = json!({"results": [1, 2], "next": "/v1/contacts?page=2"});
        assert_eq!(
            super::next(
                &Pagination::Link,
                &body_link,
                None,
                2,
                &response(2, &drf, vec![])
            ),
            Ok(Some(Position::Link(
                "https://api.example.com/v1/contacts?page=2".into()
            )))
        );
        let done = json!({"results": [1], "next": null});
        assert_eq!(
            super::next(
                &Pagination::Link,
                &body_link,
                None,
                2,
                &response(1, &done, vec![])
            ),
            Ok(None)
        );
    }

    #[test]
    fn link_headers_are_parsed_as_rfc_8288_says() {
        let cases: Vec<(&str, Option<&str>)> = vec![
            (r#"<https://h/a?p=2>; rel="next""#, Some("https://h/a?p=2")),
            (r#"<https://h/a?p=2>;rel=next"#, Some("https://h/a?p=2")),
            (
                r#"<https://h/a?p=2>; rel="prev next""#,
                Some("https://h/a?p=2"),
            ),
            (r#"<https://h/a?p=2>; REL="Next""#, Some("https://h/a?p=2")),
            (
                r#"<https://h/a?p=1>; title="a, b"; rel="prev", <https://h/a?p=3>; rel="next""#,
                Some("https://h/a?p=3"),
            ),
            (r#"<https://h/a?p=1>; rel="prev""#, None),
            (r#"<https://h/a?p=1>; rel="nextish""#, None),
            ("", None),
            ("garbage", None),
        ];
        for (header, expected) in cases {
            assert_eq!(
                next_link(std::iter::once(header)).as_deref(),
                expected,
                "{header}"
            );
        }
    }

    #[test]
    fn relative_links_are_resolved_against_the_request() {
        let base = "https://api.example.com/v1/contacts?limit=2";
        for (link, expected) in [
            ("https://other.example.com/x", "https://other.example.com/x"),
            (
                "/v1/contacts?page=2",
                "https://api.example.com/v1/contacts?page=2",
            ),
            ("?page=2", "https://api.example.com/v1/contacts?page=2"),
            (
                "contacts?page=2",
                "https://api.example.com/v1/contacts?page=2",
            ),
            ("//cdn.example.com/p", "https://cdn.example.com/p"),
        ] {
            assert_eq!(resolve(base, link), expected, "{link}");
        }
        assert_eq!(resolve("http://h:8080", "/x"), "http://h:8080/x");
        assert_eq!(resolve("http://h:8080?a=1", "y"), "http://h:8080/y");
    }

    #[test]
    fn read_cursors_round_trip_and_old_page_numbers_still_parse() {
        for p in [
            Position::Page(2),
            Position::Offset(40),
            Position::Cursor("abc".into()),
            Position::Link("https://h/x?page=2".into()),
        ] {
            let text = serde_json::to_string(&p).unwrap();
            assert_eq!(Position::parse(&text).unwrap(), p, "{text}");
        }
        assert_eq!(
            serde_json::to_string(&Position::Page(2)).unwrap(),
            r#"{"page":2}"#
        );
        assert_eq!(Position::parse("3").unwrap(), Position::Page(3));
        assert!(Position::parse("nope")
            .unwrap_err()
            .contains("bad read cursor 'nope'"));
    }
}
