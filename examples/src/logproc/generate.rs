//! A deterministic generator of realistic access-log lines, about 0.5 % of them
//! malformed.
//!
//! The same seed and line count always give the same lines. Clients, paths and
//! statuses follow skewed distributions (a few hot clients and pages, mostly
//! `200`s, bursts of `5xx`), timestamps advance by 0–170 ms a line from
//! 2025-03-14T00:00:00Z (about a day per million lines), and each malformed
//! line is broken in a way the parser must reject (cut inside the request, a
//! bad status, a bad date, garbage, an empty line).

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

/// The generator's default seed.
pub const DEFAULT_SEED: u64 = 0x5EED_1065;

/// Deterministic log lines; see the [module docs](self).
///
/// # Examples
///
/// ```
/// use weir_examples::logproc::{Generator, parse_line};
///
/// let mut generator = Generator::new(7, 1_000);
/// let mut line = String::new();
/// let (mut good, mut bad) = (0, 0);
/// while let Some(malformed) = generator.next_line(&mut line) {
///     match parse_line(&line) {
///         Ok(_) => { assert!(!malformed); good += 1 }
///         Err(_) => { assert!(malformed); bad += 1 }
///     }
///     line.clear();
/// }
/// assert_eq!(good + bad, 1_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Generator {
    state: u64,
    remaining: u64,
    /// Milliseconds since the UNIX epoch of the next line.
    clock_ms: u64,
    /// While > 0, the backend is failing: many 5xx.
    outage: u32,
}

const START_MS: u64 = 1_741_910_400_000; // 2025-03-14T00:00:00Z

const PATHS: [&str; 24] = [
    "/",
    "/index.html",
    "/login",
    "/logout",
    "/api/v1/orders",
    "/api/v1/orders/{id}",
    "/api/v1/users/{id}",
    "/api/v1/search?q={id}",
    "/static/app.js",
    "/static/app.css",
    "/static/logo.png",
    "/favicon.ico",
    "/robots.txt",
    "/products/{id}",
    "/cart",
    "/checkout",
    "/api/v1/cart/items",
    "/docs/getting-started",
    "/blog/{id}",
    "/health",
    "/admin",
    "/wp-login.php",
    "/api/v2/stream",
    "/images/{id}.jpg",
];
const METHODS: [&str; 6] = ["GET", "GET", "GET", "POST", "PUT", "DELETE"];
const AGENTS: [&str; 6] = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "curl/8.5.0",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "okhttp/4.12.0",
];
const REFERERS: [&str; 4] = [
    "-",
    "https://www.example.com/",
    "https://search.example.org/?q=weir",
    "https://shop.example.com/cart",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl Generator {
    /// A generator of `lines` lines from `seed`.
    pub fn new(seed: u64, lines: u64) -> Self {
        Generator {
            state: seed,
            remaining: lines,
            clock_ms: START_MS,
            outage: 0,
        }
    }

    /// Lines left to generate.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Appends the next line (without a newline) to `out`; `Some(true)` when the
    /// line is malformed on purpose, `None` when every line was generated.
    pub fn next_line(&mut self, out: &mut String) -> Option<bool> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        self.clock_ms += self.below(171);
        if self.outage > 0 {
            self.outage -= 1;
        } else if self.below(20_000) == 0 {
            self.outage = 200 + self.below(800) as u32;
        }
        let malformed = self.below(1_000) < 5;
        let start = out.len();
        self.write_good(out);
        if malformed {
            self.break_line(out, start);
        }
        Some(malformed)
    }

    /// Writes `lines` lines from `seed` to `path`, one per line; returns the
    /// 1-based numbers of the malformed lines.
    ///
    /// # Errors
    ///
    /// The file cannot be created or written.
    pub fn write_file(seed: u64, lines: u64, path: &Path) -> io::Result<Vec<u64>> {
        let mut file = io::BufWriter::new(std::fs::File::create(path)?);
        let mut generator = Generator::new(seed, lines);
        let mut line = String::new();
        let mut malformed = Vec::new();
        let mut number = 0;
        while let Some(bad) = generator.next_line(&mut line) {
            number += 1;
            if bad {
                malformed.push(number);
            }
            line.push('\n');
            file.write_all(line.as_bytes())?;
            line.clear();
        }
        file.flush()?;
        Ok(malformed)
    }

    fn next_u64(&mut self) -> u64 {
        // splitmix64
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Skewed towards 0: the minimum of two uniform draws, squared-ish.
    fn skewed(&mut self, n: u64) -> u64 {
        let a = self.below(n);
        let b = self.below(n);
        let c = self.below(n);
        a.min(b).min(c)
    }

    fn write_good(&mut self, out: &mut String) {
        let client = self.skewed(5_000);
        let ip = (10 << 24) | (client * 2_654_435_761 % (1 << 24));
        let secs = self.clock_ms / 1_000;
        let (days, in_day) = (secs / 86_400, secs % 86_400);
        let (y, m, d) = civil_from_days(days as i64);
        let method = METHODS[self.below(METHODS.len() as u64) as usize];
        let path = PATHS[self.skewed(PATHS.len() as u64) as usize];
        let id = self.skewed(10_000);
        let status = self.status();
        let bytes = if status == 304 {
            0
        } else {
            200 + self.skewed(60_000)
        };
        let _ = write!(
            out,
            "{}.{}.{}.{} - {} [{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000] \"{method} ",
            ip >> 24,
            (ip >> 16) & 255,
            (ip >> 8) & 255,
            ip & 255,
            if client.is_multiple_of(7) {
                "alice"
            } else {
                "-"
            },
            MONTHS[m as usize - 1],
            in_day / 3_600,
            in_day / 60 % 60,
            in_day % 60,
        );
        match path.split_once("{id}") {
            Some((a, b)) => {
                let _ = write!(out, "{a}{id}{b}");
            }
            None => out.push_str(path),
        }
        let _ = write!(out, " HTTP/1.1\" {status} ");
        if status == 204 {
            out.push('-');
        } else {
            let _ = write!(out, "{bytes}");
        }
        if self.below(10) != 0 {
            let referer = REFERERS[self.below(REFERERS.len() as u64) as usize];
            let agent = AGENTS[self.skewed(AGENTS.len() as u64) as usize];
            let _ = write!(out, " \"{referer}\" \"{agent}\"");
        }
    }

    fn status(&mut self) -> u16 {
        if self.outage > 0 && self.below(3) == 0 {
            return [500, 502, 503, 504][self.below(4) as usize];
        }
        match self.below(1_000) {
            0..=779 => 200,
            780..=799 => 204,
            800..=859 => 304,
            860..=889 => [301, 302][self.below(2) as usize],
            890..=959 => 404,
            960..=979 => [401, 403][self.below(2) as usize],
            980..=989 => 429,
            _ => [500, 502, 503][self.below(3) as usize],
        }
    }

    /// Breaks the line written from `start` so that the parser must reject it.
    fn break_line(&mut self, out: &mut String, start: usize) {
        let line = &out[start..];
        let len = line.len();
        let request_at = line.find('"').map_or(0, |i| i + 1);
        let status_at = line.find("\" ").map_or(0, |i| i + 2);
        let date_at = line.find('[').map_or(0, |i| i + 1);
        match self.below(6) {
            0 => {
                // Cut inside the request: the closing quote is missing.
                let cut = request_at + 1 + self.below(8) as usize;
                out.truncate(start + cut.min(len - 1));
            }
            // A status that is not a number.
            1 => out.replace_range(start + status_at..start + status_at + 1, "X"),
            // An impossible date.
            2 => out.replace_range(start + date_at..start + date_at + 2, "32"),
            3 => {
                out.truncate(start);
                out.push_str("GET /index.html HTTP/1.1");
            }
            4 => out.truncate(start),
            _ => {
                out.truncate(start);
                out.push_str("\u{fffd}\u{fffd} binary-ish junk \t\u{1}\u{2}");
            }
        }
    }
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logproc::parse_line;

    #[test]
    fn the_same_seed_gives_the_same_lines_and_about_half_a_percent_malformed() {
        let collect = |seed| {
            let mut g = Generator::new(seed, 40_000);
            let mut all = String::new();
            let mut bad = 0;
            while let Some(b) = g.next_line(&mut all) {
                all.push('\n');
                bad += u64::from(b);
            }
            (all, bad)
        };
        let (a, bad) = collect(1);
        assert_eq!(a, collect(1).0);
        assert_ne!(a, collect(2).0);
        assert!((100..=300).contains(&bad), "{bad} malformed of 40000");
    }

    #[test]
    fn malformed_lines_are_exactly_those_the_parser_rejects() {
        let mut g = Generator::new(DEFAULT_SEED, 50_000);
        let mut line = String::new();
        let mut statuses = std::collections::HashSet::new();
        while let Some(bad) = g.next_line(&mut line) {
            match parse_line(&line) {
                Ok(l) => {
                    assert!(!bad, "{line}");
                    statuses.insert(l.status);
                }
                Err(_) => assert!(bad, "{line}"),
            }
            line.clear();
        }
        assert!(statuses.contains(&200) && statuses.contains(&503));
    }
}
