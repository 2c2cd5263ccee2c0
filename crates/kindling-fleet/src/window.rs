//! Maintenance windows: `Sat,Sun 02:00-06:00 Europe/Paris`.
//!
//! Days are `Mon` to `Sun`, comma-separated, or ranges (`Mon-Fri`); `*` or no days is every
//! day. The times are the wall-clock times of the zone (an IANA name; UTC when none is given),
//! so a window stays at 02:00 local across daylight-saving changes. A window that ends at or
//! before its start runs past midnight (`Fri 22:00-02:00` is Friday 22:00 to Saturday 02:00)
//! and belongs to the day it starts on.

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// Why a window does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "window {text:?}: {problem}; write it as \"Sat,Sun 02:00-06:00 Europe/Paris\" (days Mon..Sun or ranges like Mon-Fri, 24-hour times, an IANA time zone)"
)]
pub struct WindowError {
    pub text: String,
    pub problem: String,
}

/// One maintenance window.
#[derive(Debug, Clone)]
pub struct Window {
    text: String,
    /// Bit 0 = Monday .. bit 6 = Sunday.
    days: u8,
    start: u16,
    end: u16,
    zone: TimeZone,
}

impl PartialEq for Window {
    fn eq(&self, other: &Window) -> bool {
        self.text == other.text
    }
}

const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// 0 for Monday .. 6 for Sunday, from a day's name or its first three letters.
fn day(name: &str) -> Option<u8> {
    let name = name.to_ascii_lowercase();
    let found = DAYS.iter().position(|d| name == *d || name == d[..3]);
    found.map(|i| i as u8)
}

/// Minutes since midnight of `HH:MM` (24:00 is the end of the day).
fn minutes(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h, m) == (24, 0))).then_some(h * 60 + m)
}

fn weekday_index(w: Weekday) -> u8 {
    w.to_monday_zero_offset() as u8
}

impl Window {
    pub fn parse(text: &str) -> Result<Window, WindowError> {
        let fail = |problem: String| WindowError {
            text: text.to_string(),
            problem,
        };
        let words: Vec<&str> = text.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| w.contains(':') && w.contains('-'))
            .ok_or_else(|| fail("no time range like 02:00-06:00".into()))?;
        let days = match &words[..at] {
            [] | ["*"] => 0x7f,
            [list] => {
                let mut bits = 0u8;
                for part in list.split(',') {
                    let (from, to) = match part.split_once('-') {
                        Some((a, b)) => (a, b),
                        None => (part, part),
                    };
                    let (Some(a), Some(b)) = (day(from), day(to)) else {
                        return Err(fail(format!("{part:?} is not a day or a range of days")));
                    };
                    let mut d = a;
                    loop {
                        bits |= 1 << d;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                bits
            }
            more => {
                return Err(fail(format!(
                    "the days {more:?} must be one comma-separated list"
                )));
            }
        };
        let (start, end) = words[at]
            .split_once('-')
            .and_then(|(a, b)| Some((minutes(a)?, minutes(b)?)))
            .ok_or_else(|| {
                fail(format!(
                    "{:?} is not a time range like 02:00-06:00",
                    words[at]
                ))
            })?;
        if start == end {
            return Err(fail("the window is empty: it ends when it starts".into()));
        }
        let zone = match &words[at + 1..] {
            [] => TimeZone::UTC,
            [name] => TimeZone::get(name)
                .map_err(|e| fail(format!("{name:?} is not a time zone this host knows: {e}")))?,
            more => return Err(fail(format!("unexpected {more:?} after the time zone"))),
        };
        Ok(Window {
            text: text.to_string(),
            days,
            start,
            end,
            zone,
        })
    }

    /// Whether `now` is inside the window.
    pub fn contains(&self, now: Timestamp) -> bool {
        let local: Zoned = now.to_zoned(self.zone.clone());
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let today = weekday_index(local.weekday());
        let yesterday = (today + 6) % 7;
        let on = |d: u8| self.days & (1 << d) != 0;
        if self.start < self.end {
            on(today) && (self.start..self.end).contains(&minute)
        } else {
            (on(today) && minute >= self.start) || (on(yesterday) && minute < self.end)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Whether `now` is inside any of `windows`; no windows means any time.
pub fn open(windows: &[Window], now: Timestamp) -> bool {
    windows.is_empty() || windows.iter().any(|w| w.contains(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> Timestamp {
        rfc3339.parse().unwrap()
    }

    #[test]
    fn a_weekend_night_in_paris() {
        let w = Window::parse("Sat,Sun 02:00-06:00 Europe/Paris").unwrap();
        // Saturday 2026-12-05: Paris is UTC+1 in winter.
        assert!(!w.contains(at("2026-12-05T00:59:00Z")));
        assert!(w.contains(at("2026-12-05T01:00:00Z")));
        assert!(w.contains(at("2026-12-06T04:59:00Z")));
        assert!(!w.contains(at("2026-12-06T05:00:00Z")));
        assert!(!w.contains(at("2026-12-07T01:30:00Z")), "a Monday");
        // In summer Paris is UTC+2: the window follows the wall clock.
        assert!(w.contains(at("2026-07-04T00:30:00Z")));
        assert!(!w.contains(at("2026-07-04T04:30:00Z")));
    }

    #[test]
    fn past_midnight_and_ranges_and_every_day() {
        let w = Window::parse("Mon-Fri 22:00-02:00").unwrap();
        assert!(w.contains(at("2026-12-04T23:00:00Z")), "Friday night");
        assert!(
            w.contains(at("2026-12-05T01:00:00Z")),
            "the small hours after Friday"
        );
        assert!(
            !w.contains(at("2026-12-06T01:00:00Z")),
            "after Saturday, not in it"
        );
        assert!(
            w.contains(at("2026-12-01T01:00:00Z")),
            "after Monday (a Tuesday)"
        );
        assert!(
            !w.contains(at("2026-11-30T01:00:00Z")),
            "after Sunday (a Monday)"
        );
        let wrap = Window::parse("Fri-Mon 00:00-24:00 UTC").unwrap();
        assert!(
            wrap.contains(at("2026-12-06T12:00:00Z")) && !wrap.contains(at("2026-12-02T12:00:00Z"))
        );
        let daily = Window::parse("03:00-04:00").unwrap();
        assert!(daily.contains(at("2026-12-02T03:30:00Z")));
        assert!(open(&[], at("2026-12-02T12:00:00Z")));
        assert!(!open(&[daily], at("2026-12-02T12:00:00Z")));
    }

    #[test]
    fn bad_windows_say_what_is_wrong() {
        for (text, problem) in [
            ("Sat 02:00", "no time range"),
            ("Caturday 02:00-03:00", "\"Caturday\" is not a day"),
            ("Sat 02:00-25:00", "is not a time range"),
            ("Sat 02:00-02:00", "empty"),
            ("Sat 02:00-03:00 Mars/Olympus", "not a time zone"),
            ("Sat Sun 02:00-03:00", "one comma-separated list"),
        ] {
            let err = Window::parse(text).unwrap_err().to_string();
            assert!(err.contains(problem), "{text}: {err}");
            assert!(err.contains("Sat,Sun 02:00-06:00 Europe/Paris"), "{err}");
        }
    }
}
