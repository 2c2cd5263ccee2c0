//! A pool's update policy: how many of its machines may be out of service at once
//! (`--max-unavailable 2` or `25%`), and the windows in which a machine may start to go out.

use serde::{Deserialize, Serialize};

use crate::window::{Window, WindowError};

/// How many machines may be unavailable at once: a count, or a percentage of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxUnavailable {
    Count(u32),
    Percent(u32),
}

impl MaxUnavailable {
    /// The number of machines, for a pool of `members`: a percentage rounds down, and at
    /// least one machine may always go, or nothing could ever be updated.
    pub fn of(self, members: usize) -> usize {
        let n = match self {
            MaxUnavailable::Count(n) => n as usize,
            MaxUnavailable::Percent(p) => members * p as usize / 100,
        };
        n.max(1)
    }
}

impl Default for MaxUnavailable {
    fn default() -> Self {
        MaxUnavailable::Count(1)
    }
}

impl std::str::FromStr for MaxUnavailable {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("{s:?} is not a number of machines (2) or a percentage of the pool (25%)");
        match s.strip_suffix('%') {
            Some(p) => match p.parse::<u32>() {
                Ok(p) if (1..=100).contains(&p) => Ok(MaxUnavailable::Percent(p)),
                _ => Err(bad()),
            },
            None => match s.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(MaxUnavailable::Count(n)),
                _ => Err(bad()),
            },
        }
    }
}

impl std::fmt::Display for MaxUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxUnavailable::Count(n) => write!(f, "{n}"),
            MaxUnavailable::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// A pool's policy as it is kept on disk (see [`crate::slots`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<String>,
}

impl Policy {
    pub fn max_unavailable(&self) -> Result<MaxUnavailable, String> {
        self.max_unavailable
            .as_deref()
            .map_or(Ok(MaxUnavailable::default()), str::parse)
    }

    pub fn windows(&self) -> Result<Vec<Window>, WindowError> {
        self.windows.iter().map(|w| Window::parse(w)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_percentages() {
        assert_eq!("2".parse::<MaxUnavailable>().unwrap().of(6), 2);
        assert_eq!("50%".parse::<MaxUnavailable>().unwrap().of(5), 2);
        assert_eq!(
            "10%".parse::<MaxUnavailable>().unwrap().of(3),
            1,
            "at least one"
        );
        assert_eq!(MaxUnavailable::default().of(100), 1);
        for bad in ["0", "-1", "0%", "101%", "two", ""] {
            let err = bad.parse::<MaxUnavailable>().unwrap_err();
            assert!(err.contains("25%"), "{bad}: {err}");
        }
    }
}
