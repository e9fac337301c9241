//! The change cursor and change times. A round of `changes` asks for the
//! records changed since `since` and pages through them; when the pages are
//! exhausted it reads the deletes feed (if any) since `deletes_since`, and the
//! next round starts from the latest change time seen. Pure: no I/O.

use crate::pagination::Position;
use crate::paths;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The cursor handed to the host by `checkpoint` and `changes`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct ChangeCursor {
    /// Records changed since this time (as the system writes times).
    pub since: String,
    /// Where the current round stands; none at its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Position>,
    /// The latest change time seen in this round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<String>,
    /// Deletes after this time; none means `since`. It advances on its own,
    /// with the times of the deletes seen, so a record changed while the feed
    /// was read is not skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletes_since: Option<String>,
    /// The page number of cursors from earlier versions (read, never written).
    #[serde(default, skip_serializing)]
    page: Option<u64>,
}

impl ChangeCursor {
    /// The cursor of a checkpoint taken at `now`.
    pub(crate) fn start(now: String) -> ChangeCursor {
        ChangeCursor {
            since: now.clone(),
            next: None,
            latest: None,
            deletes_since: Some(now),
            page: None,
        }
    }

    /// Parses a cursor; one from an earlier version (`{"since", "page",
    /// "latest"}`) continues at its page.
    pub(crate) fn parse(text: &str) -> Result<ChangeCursor, String> {
        let mut cursor: ChangeCursor =
            serde_json::from_str(text).map_err(|e| format!("bad change cursor '{text}': {e}"))?;
        if let Some(page) = cursor.page.take().filter(|&p| p > 1) {
            cursor.next.get_or_insert(Position::Page(page));
        }
        Ok(cursor)
    }

    /// Notes the change time of a record of this round.
    pub(crate) fn saw(&mut self, time: &str) {
        if self.latest.as_deref().is_none_or(|l| is_later(time, l)) {
            self.latest = Some(time.to_string());
        }
    }

    /// The time the deletes feed is read from.
    pub(crate) fn deletes_since(&self) -> &str {
        self.deletes_since.as_deref().unwrap_or(&self.since)
    }

    /// Notes the time of a delete seen in the feed.
    pub(crate) fn saw_delete(&mut self, time: &str) {
        if is_later(time, self.deletes_since()) {
            self.deletes_since = Some(time.to_string());
        }
    }

    /// The cursor of the next round: changes since the latest time seen.
    pub(crate) fn next_round(self) -> ChangeCursor {
        let deletes_since = self.deletes_since.unwrap_or_else(|| self.since.clone());
        let since = match self.latest {
            Some(latest) if is_later(&latest, &self.since) => latest,
            _ => self.since,
        };
        ChangeCursor {
            deletes_since: Some(deletes_since),
            since,
            next: None,
            latest: None,
            page: None,
        }
    }

    pub(crate) fn to_text(&self) -> String {
        // A struct of strings and numbers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A record's change time: the first of `fields` that holds a non-null
/// string or number (Directus: `date_updated`, null until the first update,
/// then `date_created`).
pub(crate) fn change_time(record: &Value, fields: &[String]) -> Option<String> {
    fields.iter().find_map(|f| paths::text(record, f))
}

/// The time `secs` seconds before `time`, written the way `time` is: an
/// ISO 8601 date and time keeps its separator, its fractional digits and its
/// offset (`Z`, `+01:00`, ` +01:00` or none), a date steps back whole days (at least
/// one), compact `YYYYMMDD` and `YYYYMMDDhhmmss` stay compact, and a number
/// of seconds, milliseconds, microseconds or nanoseconds since the epoch
/// stays a number of the same unit. `None` for a time in another form.
pub(crate) fn earlier(time: &str, secs: u32) -> Option<String> {
    let t = time.trim();
    let digits = t.len();
    if digits == 8 && t.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(date) = jiff::civil::Date::strptime("%Y%m%d", t) {
            let before = date.checked_sub(days_back(secs)).ok()?;
            return Some(before.strftime("%Y%m%d").to_string());
        }
    }
    if digits == 14 && t.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(at) = jiff::civil::DateTime::strptime("%Y%m%d%H%M%S", t) {
            let before = at
                .checked_sub(jiff::SignedDuration::from_secs(i64::from(secs)))
                .ok()?;
            return Some(before.strftime("%Y%m%d%H%M%S").to_string());
        }
    }
    // The unit of an epoch number, by its size: seconds until the year 5138.
    let unit = |n: f64| match n.abs() {
        n if n >= 1e17 => 1e9,
        n if n >= 1e14 => 1e6,
        n if n >= 1e11 => 1e3,
        _ => 1.0,
    };
    if let Ok(n) = t.parse::<i64>() {
        let step = unit(n as f64) as i64;
        return Some((n - i64::from(secs) * step).to_string());
    }
    if let Ok(n) = t.parse::<f64>() {
        if n.is_finite() {
            return Some((n - f64::from(secs) * unit(n)).to_string());
        }
    }
    if let Ok(date) = t.parse::<jiff::civil::Date>() {
        if t.len() == 10 {
            return date
                .checked_sub(days_back(secs))
                .ok()
                .map(|d| d.to_string());
        }
    }
    // A date and a time, then an offset or nothing.
    let offset_at = t
        .char_indices()
        .skip(10)
        .find(|&(_, c)| matches!(c, 'Z' | 'z' | '+' | '-'))
        .map_or(t.len(), |(i, _)| i);
    let (civil, offset) = t.split_at(offset_at);
    // Spaces before the offset (`14:00:30 +01:00`) stay where they are.
    let spaced = civil.trim_end();
    let (civil, gap) = civil.split_at(spaced.len());
    let at: jiff::civil::DateTime = civil.parse().ok()?;
    let before = at
        .checked_sub(jiff::SignedDuration::from_secs(i64::from(secs)))
        .ok()?;
    let digits = civil
        .split_once('.')
        .map_or(0, |(_, fraction)| fraction.len().min(9));
    let mut text = format!("{before:.digits$}");
    if civil.as_bytes().get(10) == Some(&b' ') {
        text.replace_range(10..11, " ");
    }
    Some(text + gap + offset)
}

/// How far a date steps back for `secs` seconds: whole days, at least one.
fn days_back(secs: u32) -> jiff::Span {
    jiff::Span::new().days(i64::from(secs.div_ceil(86_400).max(1)))
}

/// Whether time `a` is after time `b`: compared as instants when both are
/// RFC 3339 times (`...Z` and `...+01:00` alike), as numbers when both are
/// numbers, as text otherwise.
pub(crate) fn is_later(a: &str, b: &str) -> bool {
    if let (Ok(x), Ok(y)) = (a.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
        return x > y;
    }
    if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
        return x > y;
    }
    a > b
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_time_steps_back_in_its_own_form() {
        let cases = [
            ("2026-11-30T14:00:30.123Z", "2026-11-30T13:59:30.123Z"),
            ("2026-11-30T14:00:30Z", "2026-11-30T13:59:30Z"),
            (
                "2026-11-30T00:00:30.000+01:00",
                "2026-11-29T23:59:30.000+01:00",
            ),
            ("2026-11-30 14:00:30.5-05:00", "2026-11-30 13:59:30.5-05:00"),
            ("2026-11-30 14:00:30 +01:00", "2026-11-30 13:59:30 +01:00"),
            ("2026-11-30 14:00:30.25 Z", "2026-11-30 13:59:30.25 Z"),
            ("2026-11-30T14:00:30", "2026-11-30T13:59:30"),
            ("2026-11-30", "2026-11-29"),
            ("1780000000", "1779999940"),
            ("1780000000000", "1779999940000"),
            ("1780000000.5", "1779999940.5"),
            ("1780000000000000", "1779999940000000"),
            ("1780000000000.5", "1779999940000.5"),
            ("20261130", "20261129"),
            ("20261130000030", "20261129235930"),
        ];
        for (time, before) in cases {
            assert_eq!(earlier(time, 60).as_deref(), Some(before), "{time}");
        }
        assert_eq!(earlier("last tuesday", 60), None);
        // Times in the same form compare as they did.
        assert!(is_later(
            "2026-11-30T14:00:30.123Z",
            &earlier("2026-11-30T14:00:30.123Z", 1).unwrap()
        ));
    }

    #[test]
    fn the_change_time_is_the_first_non_null_field() {
        let fields = ["date_updated".to_string(), "date_created".to_string()];
        let created =
            json!({"id": 2, "date_updated": null, "date_created": "2026-11-22T07:30:00.123Z"});
        assert_eq!(
            change_time(&created, &fields).as_deref(),
            Some("2026-11-22T07:30:00.123Z")
        );
        let updated = json!({"date_updated": "2026-11-23T00:00:00.000Z", "date_created": "2026-11-22T07:30:00.123Z"});
        assert_eq!(
            change_time(&updated, &fields).as_deref(),
            Some("2026-11-23T00:00:00.000Z")
        );
        assert_eq!(
            change_time(&json!({"v": 17}), &["v".into()]).as_deref(),
            Some("17")
        );
        assert_eq!(change_time(&json!({}), &fields), None);
    }

    #[test]
    fn times_compare_as_instants_when_they_can() {
        assert!(is_later("2026-01-01T00:00:00.001Z", "2026-01-01T00:00:00Z"));
        assert!(!is_later(
            "2026-01-01T01:00:00+01:00",
            "2026-01-01T00:00:00Z"
        ));
        assert!(is_later(
            "2026-01-01T01:00:01+01:00",
            "2026-01-01T00:00:00.999Z"
        ));
        assert!(is_later("100", "99"));
        assert!(is_later("2026-01-02 00:00:00", "2026-01-01 23:59:59"));
    }

    #[test]
    fn a_round_pages_then_starts_again_from_the_latest_time() {
        let mut c = ChangeCursor::start("2026-01-01T00:00:00.000Z".into());
        c.saw("2026-01-03T00:00:00.000Z");
        c.saw("2026-01-02T00:00:00.000Z");
        c.next = Some(Position::Page(2));
        let c = ChangeCursor::parse(&c.to_text()).unwrap();
        assert_eq!(c.latest.as_deref(), Some("2026-01-03T00:00:00.000Z"));
        assert_eq!(c.next, Some(Position::Page(2)));
        let mut c = c.next_round();
        assert_eq!(c.since, "2026-01-03T00:00:00.000Z");
        assert_eq!(c.next, None);
        assert_eq!(c.latest, None);
        assert_eq!(c.deletes_since(), "2026-01-01T00:00:00.000Z");
        c.saw_delete("2026-01-02T12:00:00.000Z");
        c.saw_delete("2026-01-02T06:00:00.000Z");
        let c = c.next_round();
        assert_eq!(c.since, "2026-01-03T00:00:00.000Z", "no change seen");
        assert_eq!(c.deletes_since(), "2026-01-02T12:00:00.000Z");
        assert_eq!(
            c.to_text(),
            r#"{"since":"2026-01-03T00:00:00.000Z","deletes_since":"2026-01-02T12:00:00.000Z"}"#
        );
    }

    #[test]
    fn cursors_of_the_earlier_version_still_parse() {
        let old = ChangeCursor::parse(
            r#"{"since":"2026-01-01T00:00:00.000Z","page":3,"latest":"2026-01-02T00:00:00.000Z"}"#,
        )
        .unwrap();
        assert_eq!(old.next, Some(Position::Page(3)));
        assert_eq!(old.latest.as_deref(), Some("2026-01-02T00:00:00.000Z"));
        assert_eq!(old.deletes_since(), "2026-01-01T00:00:00.000Z");
        let next = old.clone().next_round();
        assert_eq!(next.since, "2026-01-02T00:00:00.000Z");
        assert_eq!(next.deletes_since(), "2026-01-01T00:00:00.000Z");
        let first =
            ChangeCursor::parse(r#"{"since":"2026-01-01T00:00:00.000Z","page":1,"latest":null}"#)
                .unwrap();
        assert_eq!(first.next, None);
        assert!(ChangeCursor::parse("17")
            .unwrap_err()
            .starts_with("bad change cursor '17'"));
    }
}
