//! The few calendar conversions the library needs: RFC 3339 timestamps in UTC, written for
//! every event and read back from the spool, and the HTTP date a `Retry-After` may carry.
//!
//! Only years 1970 to 9999 are handled; other times have no representation here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from 1970 to the start of the year 10000.
const YEAR_10000: u64 = 253_402_300_800;
const DAY: u64 = 86_400;

/// The days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    // Counted from 0000-03-01, so that the leap day ends each 400-year era's years.
    let (year, month) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = year / 400;
    let year_of_era = year % 400;
    let day_of_year = (153 * month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719,468 days lie between 0000-03-01 and 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

/// The year, month and day of a count of days since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month + 2) / 5 + 1;
    let month = if month < 10 { month + 3 } else { month - 9 };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
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

/// `2026-11-22T07:04:16Z`, or with `millis` `2026-11-22T07:04:16.123Z`; `None` before 1970
/// or from the year 10000 on.
pub(crate) fn rfc3339(time: SystemTime, millis: bool) -> Option<[u8; 24]> {
    let since = time.duration_since(UNIX_EPOCH).ok()?;
    let seconds = since.as_secs();
    if seconds >= YEAR_10000 {
        return None;
    }
    let (year, month, day) = civil_from_days(seconds / DAY);
    let of_day = seconds % DAY;
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for slot in out[at..at + width].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, of_day / 3600);
    put(14, 2, of_day / 60 % 60);
    put(17, 2, of_day % 60);
    put(20, 3, u64::from(since.subsec_millis()));
    if !millis {
        out[19] = b'Z';
    }
    Some(out)
}

/// The length of what [`rfc3339`] wrote.
pub(crate) fn rfc3339_len(millis: bool) -> usize {
    if millis { 24 } else { 20 }
}

/// [`rfc3339`] as a string, or an empty one when out of range.
pub(crate) fn rfc3339_string(time: SystemTime, millis: bool) -> String {
    rfc3339(time, millis)
        .map(|text| String::from_utf8_lossy(&text[..rfc3339_len(millis)]).into_owned())
        .unwrap_or_default()
}

/// Reads the digits of `text`, all of them ASCII digits.
fn number(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        text.iter()
            .fold(0, |value, digit| value * 10 + u64::from(digit - b'0')),
    )
}

/// The time of a valid date and time of day, from 1970 on.
fn checked_time(date: (u64, u64, u64), clock: (u64, u64, u64)) -> Option<SystemTime> {
    let (year, month, day) = date;
    let (hour, minute, second) = clock;
    let valid = (1970..=9999).contains(&year)
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        // A leap second is read as the last second of its minute.
        && second <= 60;
    valid.then(|| {
        let seconds =
            days_from_civil(year, month, day) * DAY + hour * 3600 + minute * 60 + second.min(59);
        UNIX_EPOCH + Duration::from_secs(seconds)
    })
}

/// Reads a UTC RFC 3339 timestamp, `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (`t`, `z` and a space
/// for the `T` accepted).
pub(crate) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
        || !matches!(bytes[bytes.len() - 1], b'Z' | b'z')
    {
        return None;
    }
    let fraction = &bytes[19..bytes.len() - 1];
    let nanos = match fraction {
        [] => 0,
        [b'.', digits @ ..] if !digits.is_empty() && digits.len() <= 9 => {
            number(digits)? * 10u64.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let time = checked_time(
        (
            number(&bytes[0..4])?,
            number(&bytes[5..7])?,
            number(&bytes[8..10])?,
        ),
        (
            number(&bytes[11..13])?,
            number(&bytes[14..16])?,
            number(&bytes[17..19])?,
        ),
    )?;
    Some(time + Duration::from_nanos(nanos))
}

/// Reads an HTTP date in its preferred form (RFC 9110's IMF-fixdate),
/// `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn parse_http_date(text: &str) -> Option<SystemTime> {
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    let bytes = text.as_bytes();
    if bytes.len() != 29
        || !DAYS.contains(&&bytes[0..3])
        || &bytes[3..5] != b", "
        || bytes[7] != b' '
        || bytes[11] != b' '
        || bytes[16] != b' '
        || bytes[19] != b':'
        || bytes[22] != b':'
        || &bytes[25..] != b" GMT"
    {
        return None;
    }
    let month = MONTHS.iter().position(|name| *name == &bytes[8..11])? as u64 + 1;
    checked_time(
        (number(&bytes[12..16])?, month, number(&bytes[5..7])?),
        (
            number(&bytes[17..19])?,
            number(&bytes[20..22])?,
            number(&bytes[23..25])?,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Times spread over the whole range, with the calendar's edges among them.
    fn samples() -> Vec<SystemTime> {
        let mut seconds: Vec<u64> = (0..2000).map(|i| i * 126_701_123 % YEAR_10000).collect();
        seconds.extend([
            0,
            DAY - 1,
            951_782_400,    // 2000-02-29
            951_868_799,    // 2000-02-29T23:59:59
            4_107_542_400,  // 2100-03-01
            YEAR_10000 - 1, // 9999-12-31T23:59:59
            1_790_000_000,
        ]);
        seconds
            .into_iter()
            .enumerate()
            .map(|(i, s)| UNIX_EPOCH + Duration::from_millis(s * 1000 + (i as u64 * 37) % 1000))
            .collect()
    }

    #[test]
    fn timestamps_are_written_as_humantime_writes_them() {
        for time in samples() {
            assert_eq!(
                rfc3339_string(time, true),
                humantime::format_rfc3339_millis(time).to_string()
            );
            assert_eq!(
                rfc3339_string(time, false),
                humantime::format_rfc3339_seconds(time).to_string()
            );
        }
    }

    #[test]
    fn timestamps_read_back_as_written() {
        for time in samples() {
            let text = rfc3339_string(time, true);
            assert_eq!(parse_rfc3339(&text), Some(time), "{text}");
            assert_eq!(
                parse_rfc3339(&text),
                humantime::parse_rfc3339(&text).ok(),
                "{text}"
            );
        }
        let precise = "2026-11-22T07:04:16.123456789Z";
        assert_eq!(
            parse_rfc3339(precise),
            humantime::parse_rfc3339(precise).ok()
        );
    }

    #[test]
    fn out_of_range_times_and_malformed_text_are_refused() {
        assert_eq!(rfc3339(UNIX_EPOCH - Duration::from_secs(1), true), None);
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(YEAR_10000), true),
            None
        );
        for bad in [
            "",
            "2026-11-22",
            "2026-11-22T07:04:16",
            "2026-11-22T07:04:16+01:00",
            "2026-02-30T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T07:04:16.Z",
            "2026-11-22T07:04:16.1234567891Z",
            "1969-12-31T23:59:59Z",
            "2026-11-22T07:0x:16Z",
            "+026-11-22T07:04:16Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_dates_are_read_as_httpdate_reads_them() {
        for time in samples() {
            let time = UNIX_EPOCH
                + Duration::from_secs(time.duration_since(UNIX_EPOCH).unwrap().as_secs());
            let text = httpdate::fmt_http_date(time);
            assert_eq!(parse_http_date(&text), Some(time), "{text}");
        }
        for bad in [
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 06 Now 1994 08:49:37 GMT",
            "Sun,  6 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }
}
