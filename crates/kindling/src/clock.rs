//! The time the commands that sign or judge certificates work at.

/// Test hook: the time to take as now (RFC 3339), to move the clock past an expiry.
pub const NOW: &str = "KINDLING_NOW";

/// Now, or the time `KINDLING_NOW` says.
pub fn now() -> time::OffsetDateTime {
    std::env::var(NOW)
        .ok()
        .and_then(|t| {
            time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).ok()
        })
        .unwrap_or_else(time::OffsetDateTime::now_utc)
}
