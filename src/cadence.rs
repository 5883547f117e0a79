//! The refresh cadence, `GOSD_CRON`: a cron expression that must fire.

use std::str::FromStr;
use std::time::Duration;

/// A refresh cadence: a cron expression.
///
/// Accepted: the `cron` crate's format with a **seconds** field first —
/// `sec min hour day-of-month month day-of-week [year]`, e.g. `*/30 * * * * *`
/// (every 30 s) or `0 */5 * * * *` (every 5 min). A classic five-field
/// expression (`*/5 * * * *`) is taken as having `0` seconds. Prefer
/// weekday names (`Mon-Fri`): in numbers, 1 is Sunday.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    expr: String,
    schedule: cron::Schedule,
}

impl Cron {
    pub(crate) fn every_30_seconds() -> Self {
        Self::from_str("*/30 * * * * *").expect("the default cron expression is valid") // ok: constant
    }

    /// The expression as given.
    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// Time from now until the next tick, if any.
    pub(crate) fn until_next(&self) -> Option<Duration> {
        let now = chrono::Utc::now();
        let next = self.schedule.after(&now).next()?;
        (next - now).to_std().ok()
    }
}

impl FromStr for Cron {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let expr = s.trim();
        let full = if expr.split_whitespace().count() == 5 {
            format!("0 {expr}")
        } else {
            expr.to_owned()
        };
        let schedule = cron::Schedule::from_str(&full).map_err(|e| {
            format!("not a cron expression ({e}); expected e.g. `*/30 * * * * *` (with seconds) or `off`")
        })?;
        if schedule.upcoming(chrono::Utc).next().is_none() {
            return Err("this cron expression never fires; use `off` to disable refreshing".into());
        }
        Ok(Self {
            expr: s.to_owned(),
            schedule,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Weekday};

    /// The weekdays an expression fires on, over the coming two weeks.
    fn weekdays(expr: &str) -> Vec<Weekday> {
        let cron: Cron = expr.parse().unwrap();
        let mut days: Vec<Weekday> = cron
            .schedule
            .upcoming(chrono::Utc)
            .take(14)
            .map(|t| t.weekday())
            .collect();
        days.sort_by_key(|d| d.num_days_from_sunday());
        days.dedup();
        days
    }

    /// What the docs say: in numbers 1 is Sunday (the `cron` crate's
    /// numbering, not crontab's 0 = Sunday, 1 = Monday); names mean what
    /// they say, in six fields and in five.
    #[test]
    fn weekday_numbers_start_at_sunday_and_names_mean_what_they_say() {
        assert_eq!(weekdays("0 0 12 * * 1"), [Weekday::Sun]);
        assert_eq!(weekdays("0 0 12 * * 2"), [Weekday::Mon]);
        assert_eq!(weekdays("0 0 12 * * 7"), [Weekday::Sat]);
        assert_eq!(weekdays("0 12 * * 1"), [Weekday::Sun], "five fields");
        assert_eq!(weekdays("0 0 12 * * Sun"), [Weekday::Sun]);
        assert_eq!(
            weekdays("0 0 12 * * Mon-Fri"),
            [
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri
            ]
        );
    }
}
