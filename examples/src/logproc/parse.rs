//! The Common / Combined Log Format parser and its validation.
//!
//! ```text
//! 127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326 "http://ref/" "Mozilla/4.08"
//! host      ident user  timestamp                   request            status bytes  referer      user agent
//! ```
//!
//! The referer and user agent (Combined format) are optional. A line cut off
//! inside its user agent (no closing quote, e.g. by a logger's line limit) is
//! accepted with the rest of the line as the agent, as GoAccess does; a missing
//! quote anywhere else makes the line malformed. A malformed line's
//! [`ParseError`] names the first field that is wrong. [`parse_line`] borrows
//! every field from the line: it allocates nothing.

use std::fmt;

/// One parsed and validated log line; every text field borrows from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// The client address (`127.0.0.1`).
    pub ip: &'a str,
    /// The authenticated user, `-` for none.
    pub user: &'a str,
    /// The request method (`GET`).
    pub method: &'a str,
    /// The request target (`/a.gif`).
    pub path: &'a str,
    /// The status code, 100 to 599.
    pub status: u16,
    /// The response size in bytes (`-` reads as 0).
    pub bytes: u64,
    /// The timestamp's minute in UTC, in minutes since the UNIX epoch.
    pub minute: i64,
    /// The referer, when the line is in Combined format.
    pub referer: Option<&'a str>,
    /// The user agent, when the line is in Combined format.
    pub agent: Option<&'a str>,
}

/// Why a line is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The line is empty.
    Empty,
    /// A field is missing: the line ends, or a separator is not where it should be.
    Missing(&'static str),
    /// The timestamp is not `dd/Mon/yyyy:HH:MM:SS ±zzzz` with valid values.
    Timestamp,
    /// The request is not `METHOD TARGET HTTP/x`.
    Request,
    /// The status is not a number from 100 to 599.
    Status,
    /// The size is neither a number nor `-`.
    Bytes,
    /// Something follows the last field.
    Trailing,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => write!(f, "empty line"),
            ParseError::Missing(field) => write!(f, "missing or malformed field: {field}"),
            ParseError::Timestamp => write!(f, "bad timestamp (want dd/Mon/yyyy:HH:MM:SS +zzzz)"),
            ParseError::Request => write!(f, "bad request (want \"METHOD TARGET HTTP/x\")"),
            ParseError::Status => write!(f, "bad status (want 100..=599)"),
            ParseError::Bytes => write!(f, "bad size (want a number or -)"),
            ParseError::Trailing => write!(f, "unexpected text after the last field"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses and validates one log line (without its newline).
///
/// # Errors
///
/// A [`ParseError`] naming what is wrong.
///
/// # Examples
///
/// ```
/// use weir_examples::logproc::parse_line;
///
/// let line = r#"10.0.0.7 - - [14/Mar/2025:09:26:53 +0100] "GET /index.html HTTP/1.1" 200 512 "-" "curl/8.5""#;
/// let parsed = parse_line(line)?;
/// assert_eq!((parsed.ip, parsed.path, parsed.status, parsed.bytes), ("10.0.0.7", "/index.html", 200, 512));
/// assert_eq!(parsed.agent, Some("curl/8.5"));
/// assert!(parse_line("10.0.0.7 - - [14/Mar/2025:09:26:53 +0100] \"GET /\" 200 1").is_err());
/// # Ok::<(), weir_examples::logproc::ParseError>(())
/// ```
pub fn parse_line(line: &str) -> Result<LogLine<'_>, ParseError> {
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut rest = line;
    let ip = word(&mut rest, "host")?;
    let ident = word(&mut rest, "ident")?;
    let user = word(&mut rest, "user")?;
    // A field that starts with the timestamp's bracket means the fields before
    // it are missing: name the first of them, not the timestamp.
    if ident.starts_with('[') {
        return Err(ParseError::Missing("ident"));
    }
    if user.starts_with('[') {
        return Err(ParseError::Missing("user"));
    }
    let Some(after_bracket) = rest.strip_prefix('[') else {
        // `frank smith [..]`: more text before the timestamp than the user.
        let user_has_a_space = rest
            .split_once(" [")
            .is_some_and(|(before, _)| !before.contains('"'));
        return Err(ParseError::Missing(if user_has_a_space {
            "user"
        } else {
            "[timestamp]"
        }));
    };
    // The timestamp holds no `]`: the first one closes it (a `] ` searched
    // for across the line could be one inside the user agent).
    let (stamp, after_stamp) = after_bracket
        .split_once(']')
        .ok_or(ParseError::Missing("[timestamp]"))?;
    let minute = parse_minute(stamp)?;
    rest = after_stamp
        .strip_prefix(' ')
        .ok_or(ParseError::Missing("\"request\""))?;
    let request = quoted(&mut rest, "\"request\"")?;
    rest = rest
        .strip_prefix(' ')
        .ok_or(ParseError::Missing("status"))?;
    let (method, path) = parse_request(request)?;
    let status_text = word_or_end(&mut rest);
    let status = parse_status(status_text)?;
    let bytes_text = word_or_end(&mut rest);
    let bytes = match bytes_text {
        "" => return Err(ParseError::Missing("size")),
        "-" => 0,
        digits => parse_digits(digits).ok_or(ParseError::Bytes)?,
    };
    let (referer, agent) = if rest.is_empty() {
        (None, None)
    } else {
        let referer = quoted(&mut rest, "\"referer\"")?;
        rest = rest
            .strip_prefix(' ')
            .ok_or(ParseError::Missing("\"user agent\""))?;
        // The last field: a line cut off inside it (no closing quote) keeps
        // the rest of the line as the user agent, as GoAccess does.
        let agent = quoted_to_end(&mut rest, "\"user agent\"")?;
        if !rest.is_empty() {
            return Err(ParseError::Trailing);
        }
        (Some(referer), Some(agent))
    };
    Ok(LogLine {
        ip,
        user,
        method,
        path,
        status,
        bytes,
        minute,
        referer,
        agent,
    })
}

/// The text up to the next space (which is consumed); it must not be empty.
fn word<'a>(rest: &mut &'a str, field: &'static str) -> Result<&'a str, ParseError> {
    let (w, r) = rest.split_once(' ').ok_or(ParseError::Missing(field))?;
    if w.is_empty() {
        return Err(ParseError::Missing(field));
    }
    *rest = r;
    Ok(w)
}

/// The text up to the next space (consumed) or the end of the line.
fn word_or_end<'a>(rest: &mut &'a str) -> &'a str {
    match rest.split_once(' ') {
        Some((w, r)) => {
            *rest = r;
            w
        }
        None => std::mem::take(rest),
    }
}

/// A double-quoted field (`\"` inside it is an escaped quote), consumed with its
/// quotes.
fn quoted<'a>(rest: &mut &'a str, field: &'static str) -> Result<&'a str, ParseError> {
    let body = rest.strip_prefix('"').ok_or(ParseError::Missing(field))?;
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => {
                *rest = &body[i + 1..];
                return Ok(&body[..i]);
            }
            _ => i += 1,
        }
    }
    Err(ParseError::Missing(field))
}

/// Like [`quoted`], for the last field of a line: without a closing quote the
/// field is the rest of the line.
fn quoted_to_end<'a>(rest: &mut &'a str, field: &'static str) -> Result<&'a str, ParseError> {
    let body = rest.strip_prefix('"').ok_or(ParseError::Missing(field))?;
    match quoted(rest, field) {
        Ok(text) => Ok(text),
        Err(_) => {
            *rest = "";
            Ok(body)
        }
    }
}

fn parse_request(request: &str) -> Result<(&str, &str), ParseError> {
    let mut parts = request.split(' ');
    let (Some(method), Some(path), Some(protocol), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::Request);
    };
    let method_ok = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    if !method_ok || path.is_empty() || !protocol.starts_with("HTTP/") {
        return Err(ParseError::Request);
    }
    Ok((method, path))
}

fn parse_status(text: &str) -> Result<u16, ParseError> {
    if text.len() != 3 {
        return Err(ParseError::Status);
    }
    match parse_digits(text) {
        Some(s @ 100..=599) => Ok(s as u16),
        _ => Err(ParseError::Status),
    }
}

/// A decimal number of at most 18 digits.
fn parse_digits(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 18 {
        return None;
    }
    text.bytes().try_fold(0_u64, |n, b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `dd/Mon/yyyy:HH:MM:SS ±zzzz` → the UTC minute since the UNIX epoch.
fn parse_minute(stamp: &str) -> Result<i64, ParseError> {
    let b = stamp.as_bytes();
    if b.len() != 26
        || b[2] != b'/'
        || b[6] != b'/'
        || b[11] != b':'
        || b[14] != b':'
        || b[17] != b':'
        || b[20] != b' '
        || !(b[21] == b'+' || b[21] == b'-')
    {
        return Err(ParseError::Timestamp);
    }
    let num =
        |range: std::ops::Range<usize>| parse_digits(&stamp[range]).ok_or(ParseError::Timestamp);
    let day = num(0..2)?;
    let month = MONTHS
        .iter()
        .position(|m| *m == &stamp[3..6])
        .ok_or(ParseError::Timestamp)? as u64
        + 1;
    let year = num(7..11)?;
    let (hour, min, sec) = (num(12..14)?, num(15..17)?, num(18..20)?);
    let (off_h, off_m) = (num(22..24)?, num(24..26)?);
    if day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 60
        || off_h > 23
        || off_m > 59
    {
        return Err(ParseError::Timestamp);
    }
    let offset = (off_h * 60 + off_m) as i64 * if b[21] == b'-' { -1 } else { 1 };
    let days = days_from_civil(year as i64, month as i64, day as i64);
    Ok(days * 1440 + (hour * 60 + min) as i64 - offset)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats a minute from [`LogLine::minute`] as `YYYY-MM-DDTHH:MMZ`.
///
/// # Examples
///
/// ```
/// use weir_examples::logproc::{format_minute, parse_line};
///
/// let line = r#"h - - [14/Mar/2025:09:26:53 +0100] "GET / HTTP/1.1" 500 0"#;
/// assert_eq!(format_minute(parse_line(line)?.minute), "2025-03-14T08:26Z");
/// # Ok::<(), weir_examples::logproc::ParseError>(())
/// ```
pub fn format_minute(minute: i64) -> String {
    let days = minute.div_euclid(1440);
    let in_day = minute.rem_euclid(1440);
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}Z",
        in_day / 60,
        in_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#;

    #[test]
    fn parses_combined_and_common_format() {
        let l = parse_line(GOOD).unwrap();
        assert_eq!(l.ip, "127.0.0.1");
        assert_eq!(l.user, "frank");
        assert_eq!((l.method, l.path), ("GET", "/apache_pb.gif"));
        assert_eq!((l.status, l.bytes), (200, 2326));
        assert_eq!(l.referer, Some("http://www.example.com/start.html"));
        assert_eq!(l.agent, Some("Mozilla/4.08 [en] (Win98; I ;Nav)"));
        assert_eq!(format_minute(l.minute), "2000-10-10T20:55Z");
        let common = r#"::1 - - [29/Feb/2024:00:00:00 +0000] "POST /api?q=1 HTTP/2.0" 404 -"#;
        let l = parse_line(common).unwrap();
        assert_eq!((l.status, l.bytes, l.agent), (404, 0, None));
        assert_eq!(format_minute(l.minute), "2024-02-29T00:00Z");
    }

    #[test]
    fn escaped_quotes_stay_inside_a_field() {
        let line = r#"h - - [01/Jan/2025:00:00:00 +0000] "GET /a HTTP/1.1" 200 1 "-" "say \"hi\"""#;
        assert_eq!(parse_line(line).unwrap().agent, Some(r#"say \"hi\""#));
    }

    #[test]
    fn rejects_each_kind_of_malformed_line() {
        let cases = [
            ("", ParseError::Empty),
            ("just-one-word", ParseError::Missing("host")),
            (
                "h - - 10/Oct/2000 \"GET / HTTP/1.0\" 200 1",
                ParseError::Missing("[timestamp]"),
            ),
            (
                "h - - [31/Feb/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1",
                ParseError::Timestamp,
            ),
            (
                "h - - [10/Foo/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1",
                ParseError::Timestamp,
            ),
            (
                "h - - [10/Oct/2000:13:55:36 -0700] \"GET /\" 200 1",
                ParseError::Request,
            ),
            (
                "h - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0 200 1",
                ParseError::Missing("\"request\""),
            ),
            (
                "h - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 2O0 1",
                ParseError::Status,
            ),
            (
                "h - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 700 1",
                ParseError::Status,
            ),
            (
                "h - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 x1",
                ParseError::Bytes,
            ),
            (
                "h - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200",
                ParseError::Missing("size"),
            ),
            (
                "h - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1 \"-\" \"a\" x",
                ParseError::Trailing,
            ),
            (
                "h - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1 \"-\"",
                ParseError::Missing("\"user agent\""),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(line), Err(want), "{line}");
        }
    }

    #[test]
    fn a_user_agent_cut_off_at_the_end_of_the_line_is_accepted() {
        let line = r#"203.0.113.9 - - [14/Mar/2025:09:26:53 +0100] "GET / HTTP/1.1" 200 123 "-" "Mozilla/5.0 (X11"#;
        let l = parse_line(line).unwrap();
        assert_eq!((l.status, l.bytes), (200, 123));
        assert_eq!((l.referer, l.agent), (Some("-"), Some("Mozilla/5.0 (X11")));
        // Cut right after the opening quote, or after an escaping backslash.
        let empty = r#"h - - [14/Mar/2025:09:26:53 +0100] "GET / HTTP/1.1" 200 1 "-" ""#;
        assert_eq!(parse_line(empty).unwrap().agent, Some(""));
        let escaped = r#"h - - [14/Mar/2025:09:26:53 +0100] "GET / HTTP/1.1" 200 1 "-" "a \"#;
        assert_eq!(parse_line(escaped).unwrap().agent, Some(r#"a \"#));
        // Only the last field may be cut off.
        let referer = r#"h - - [14/Mar/2025:09:26:53 +0100] "GET / HTTP/1.1" 200 1 "http://ref"#;
        assert_eq!(parse_line(referer), Err(ParseError::Missing("\"referer\"")));
    }

    #[test]
    fn the_reason_names_the_field_that_is_wrong_not_the_timestamp() {
        let stamp = "[10/Oct/2000:13:55:36 -0700]";
        let tail = r#""GET / HTTP/1.0" 200 1 "-" "Mozilla/4.08 [en] (Win98)""#;
        let cases = [
            // ident and user missing: the bracket is where ident should be.
            (format!("h {stamp} {tail}"), ParseError::Missing("ident")),
            (format!("h - {stamp} {tail}"), ParseError::Missing("user")),
            // A user with a space in it.
            (
                format!("h - frank smith {stamp} {tail}"),
                ParseError::Missing("user"),
            ),
            // No space before the request: the `] ` inside the user agent is
            // not taken for the timestamp's end.
            (
                format!("h - - {stamp}{tail}"),
                ParseError::Missing("\"request\""),
            ),
            // A timestamp whose bracket is never closed.
            (
                "h - - [10/Oct/2000:13:55:36 -0700 \"GET / HTTP/1.0\" 200 1".to_owned(),
                ParseError::Missing("[timestamp]"),
            ),
            // No timestamp at all, a user agent with " [" in it.
            (format!("h - - {tail}"), ParseError::Missing("[timestamp]")),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(&line), Err(want), "{line}");
        }
    }

    #[test]
    fn minutes_round_trip_through_the_civil_calendar() {
        for days in [-1, 0, 59, 365, 10_957, 11_016, 20_000, 2_932_896] {
            let minute = days * 1440 + 61;
            let text = format_minute(minute);
            let (date, _) = text.split_once('T').unwrap();
            let parts: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
            assert_eq!(
                days_from_civil(parts[0], parts[1], parts[2]),
                days,
                "{text}"
            );
        }
    }
}
