//! UTC calendar hours for file and directory names, without a date crate.
//!
//! Instants before 1970 are converted exactly (proleptic Gregorian calendar). Instants outside the
//! years 0000 to 9999 are clamped to the first or last millisecond of that range, so a day directory
//! always has the `YYYY-MM-DD` shape, even for a wildly wrong clock.

const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// 0000-01-01T00:00:00.000Z.
const MIN_MS: i64 = days_from_civil(0, 1, 1) * MS_PER_DAY;
/// 9999-12-31T23:59:59.999Z.
const MAX_MS: i64 = days_from_civil(10_000, 1, 1) * MS_PER_DAY - 1;

/// One UTC hour of one day. The field order makes the derived `Ord` chronological.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct UtcHour {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
}

impl UtcHour {
    /// The UTC hour that contains `ms` milliseconds since the Unix epoch, clamped to years 0000–9999.
    pub(super) fn from_unix_ms(ms: i64) -> UtcHour {
        let ms = ms.clamp(MIN_MS, MAX_MS);
        let (year, month, day) = civil_from_days(ms.div_euclid(MS_PER_DAY));
        UtcHour {
            year: year as u16, // 0..=9999 after the clamp
            month,
            day,
            hour: (ms.rem_euclid(MS_PER_DAY) / MS_PER_HOUR) as u8, // 0..=23
        }
    }

    /// The day directory's name, `YYYY-MM-DD`.
    pub(super) fn day_name(self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// The hour of the day, 0 to 23.
    pub(super) fn hour(self) -> u8 {
        self.hour
    }
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to a proleptic Gregorian
/// (year, month 1–12, day 1–31). Eras are 400-year cycles starting on 0000-03-01.
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146_096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st, 0..=365
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + i64::from(month <= 2);
    (year, month as u8, day as u8)
}

/// Howard Hinnant's `days_from_civil`, the inverse of [`civil_from_days`].
pub(super) const fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(ms: i64) -> String {
        let h = UtcHour::from_unix_ms(ms);
        format!("{}T{:02}", h.day_name(), h.hour())
    }

    #[test]
    fn known_instants() {
        let cases = [
            (0, "1970-01-01T00"),
            (3_599_999, "1970-01-01T00"),
            (3_600_000, "1970-01-01T01"),
            (951_782_400_000, "2000-02-29T00"), // leap day of a year divisible by 400
            (951_868_799_999, "2000-02-29T23"),
            (951_868_800_000, "2000-03-01T00"),
            (1_735_686_000_000, "2024-12-31T23"),
            (1_735_689_599_999, "2024-12-31T23"),
            (1_735_689_600_000, "2025-01-01T00"),
            (4_107_542_400_000, "2100-03-01T00"), // 2100 is not a leap year
        ];
        for (ms, want) in cases {
            assert_eq!(name(ms), want, "{ms}");
        }
    }

    #[test]
    fn before_1970_is_exact() {
        assert_eq!(name(-1), "1969-12-31T23");
        assert_eq!(name(-3_600_000), "1969-12-31T23");
        assert_eq!(name(-3_600_001), "1969-12-31T22");
        assert_eq!(name(-2_203_891_200_000), "1900-03-01T00");
    }

    #[test]
    fn outside_four_digit_years_is_clamped() {
        assert_eq!(name(i64::MIN), "0000-01-01T00");
        assert_eq!(name(MIN_MS - 1), "0000-01-01T00");
        assert_eq!(name(MIN_MS), "0000-01-01T00");
        assert_eq!(name(MAX_MS), "9999-12-31T23");
        assert_eq!(name(MAX_MS + 1), "9999-12-31T23");
        assert_eq!(name(i64::MAX), "9999-12-31T23");
        assert_eq!(days_from_civil(0, 1, 1), -719_528);
    }

    #[test]
    fn every_day_follows_the_one_before() {
        let month_len = |y: i64, m: u8| match m {
            2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let first = days_from_civil(1600, 1, 1);
        let mut prev = civil_from_days(first - 1);
        assert_eq!(prev, (1599, 12, 31));
        for days in first..days_from_civil(2401, 1, 1) {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = prev;
            let next = if pd < month_len(py, pm) {
                (py, pm, pd + 1)
            } else if pm < 12 {
                (py, pm + 1, 1)
            } else {
                (py + 1, 1, 1)
            };
            assert_eq!((y, m, d), next, "day {days}");
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days);
            prev = (y, m, d);
        }
    }
}
