//! `datetime` from a query string, as pydantic 2.14 (speedate) parses it in lax mode: the forms
//! pollers send, and the same error for garbage.
//!
//! Tried in order, the first that fits wins:
//! 1. an RFC 3339-like date-time: `YYYY-MM-DD`, a separator `T`, `t`, ` ` or `_`, `HH:MM`,
//!    optionally `:SS` and a fraction after `.` or `,` (digits past the sixth are dropped), then
//!    optionally `Z`, `z`, `±HH:MM` or `±HHMM` (hours up to 23);
//! 2. a number (`[+-]?(d+[.d*]|.d+)`): Unix seconds, or milliseconds when its magnitude is above
//!    2×10¹⁰ (speedate's rule);
//! 3. a bare date `YYYY-MM-DD`, meaning its midnight.
//!
//! When none fits, the error is the bare-date parser's (`input is too short`, `invalid character
//! in year`, ...; `unexpected extra characters at the end of the input` when a valid date is
//! followed by something that is not a valid time), as pydantic reports it.
//!
//! Known differences, all on exotic input: pydantic also accepts exponents in some numbers
//! (`1.0e3`) and reports a few range errors differently. A value without an offset is naive in
//! pydantic; the simulator compares it as UTC.

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

const MICROS_PER_SEC: i64 = 1_000_000;
/// 9999-12-31T23:59:59.999Z: the last instant a timestamp may name.
const LAST_MICROS: i128 = 253_402_300_799_999_000;
/// 0000-01-01T00:00:00Z: the first.
const FIRST_MICROS: i128 = -62_167_219_200_000_000;

/// Why the text is not a datetime: pydantic's error `type` and the `ctx.error` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateTimeError {
    pub kind: &'static str,
    pub error: &'static str,
}

impl DateTimeError {
    const fn date(error: &'static str) -> Self {
        DateTimeError {
            kind: "datetime_from_date_parsing",
            error,
        }
    }

    pub fn msg(&self) -> String {
        match self.kind {
            "datetime_parsing" => format!("Input should be a valid datetime, {}", self.error),
            _ => format!("Input should be a valid datetime or date, {}", self.error),
        }
    }
}

const TOO_SHORT: DateTimeError = DateTimeError::date("input is too short");
const EXTRA: DateTimeError =
    DateTimeError::date("unexpected extra characters at the end of the input");
const YEAR_ZERO: DateTimeError = DateTimeError {
    kind: "datetime_parsing",
    error: "year 0 is out of range",
};

/// Parses `text` as pydantic's lax `datetime` does.
pub fn parse(text: &str) -> Result<Micros, DateTimeError> {
    let b = text.as_bytes();
    if let Some(at) = datetime(b) {
        return at;
    }
    if let Some(at) = timestamp(text) {
        return at;
    }
    let date = date(b)?;
    if b.len() > 10 {
        return Err(EXTRA);
    }
    date.midnight()
}

#[derive(Clone, Copy)]
struct Date {
    year: i64,
    month: i64,
    day: i64,
}

impl Date {
    fn midnight(self) -> Result<Micros, DateTimeError> {
        if self.year == 0 {
            return Err(YEAR_ZERO);
        }
        Ok(days_from_civil(self.year, self.month, self.day) * 86_400 * MICROS_PER_SEC)
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

/// The first ten bytes as `YYYY-MM-DD`, checked in speedate's order.
fn date(b: &[u8]) -> Result<Date, DateTimeError> {
    if b.len() < 10 {
        return Err(TOO_SHORT);
    }
    let year = digits(&b[0..4]).ok_or(DateTimeError::date("invalid character in year"))?;
    let separator = DateTimeError::date("invalid date separator, expected `-`");
    if b[4] != b'-' {
        return Err(separator);
    }
    let month = digits(&b[5..7]).ok_or(DateTimeError::date("invalid character in month"))?;
    if b[7] != b'-' {
        return Err(separator);
    }
    let day = digits(&b[8..10]).ok_or(DateTimeError::date("invalid character in day"))?;
    if !(1..=12).contains(&month) {
        return Err(DateTimeError::date(
            "month value is outside expected range of 1-12",
        ));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(DateTimeError::date("day value is outside expected range"));
    }
    Ok(Date { year, month, day })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A full date-time, or `None` when the text is not one (then other forms are tried).
fn datetime(b: &[u8]) -> Option<Result<Micros, DateTimeError>> {
    if b.len() < 16 || !matches!(b[10], b'T' | b't' | b' ' | b'_') {
        return None;
    }
    let date = date(b).ok()?;
    let two = |at: usize, max: i64| b.get(at..at + 2).and_then(digits).filter(|v| *v <= max);
    let hour = two(11, 23)?;
    if b[13] != b':' {
        return None;
    }
    let minute = two(14, 59)?;
    let mut at = 16;
    let mut second = 0;
    let mut micros = 0;
    if b.get(at) == Some(&b':') {
        second = two(at + 1, 59)?;
        at += 3;
        if matches!(b.get(at), Some(b'.' | b',')) {
            let run = b[at + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if run == 0 {
                return None;
            }
            let kept = &b[at + 1..at + 1 + run.min(6)];
            micros = digits(kept)? * 10i64.pow(6 - kept.len() as u32);
            at += 1 + run;
        }
    }
    let offset_secs = match &b[at..] {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (h, m) = match rest {
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => {
                    (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?)
                }
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    Some(date.midnight().map(|midnight| {
        midnight + ((hour * 3600 + minute * 60 + second - offset_secs) * MICROS_PER_SEC) + micros
    }))
}

/// A Unix timestamp in seconds or milliseconds, or `None` when the text is not a number.
/// Integer arithmetic keeps microseconds exact where a float would not.
fn timestamp(text: &str) -> Option<Result<Micros, DateTimeError>> {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let negative = text.starts_with('-');
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let all_digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let whole_digits = whole.trim_start_matches('0');
    // Beyond 18 digits every reading is out of range; saturate instead of overflowing.
    let whole_value: i128 = if whole_digits.len() > 18 {
        i128::from(i64::MAX)
    } else {
        whole_digits.parse().unwrap_or(0)
    };
    let fraction_nonzero = fraction.bytes().any(|c| c != b'0');
    let is_millis =
        whole_value > 20_000_000_000 || (whole_value == 20_000_000_000 && fraction_nonzero);
    // Microseconds per unit, and how many fraction digits reach a microsecond.
    let (per_unit, places) = if is_millis {
        (1_000i128, 3)
    } else {
        (1_000_000, 6)
    };
    let kept: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(places)
        .collect();
    let round_up = fraction.as_bytes().get(places).is_some_and(|d| *d >= b'5');
    let magnitude =
        whole_value * per_unit + kept.parse::<i128>().unwrap_or(0) + i128::from(round_up);
    let micros = if negative { -magnitude } else { magnitude };
    if micros > LAST_MICROS {
        return Some(Err(DateTimeError::date(
            "dates after 9999 are not supported as unix timestamps",
        )));
    }
    if micros < FIRST_MICROS {
        return Some(Err(DateTimeError::date(
            "dates before 0000 are not supported as unix timestamps",
        )));
    }
    Some(Ok(micros as Micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Micros {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    #[test]
    fn forms_pollers_send() {
        let eight = 1_748_764_800 * MICROS_PER_SEC;
        assert_eq!(at("2025-06-01T08:00:00Z"), eight);
        assert_eq!(at("2025-06-01 08:00:00"), eight);
        assert_eq!(at("2025-06-01t08:00z"), eight);
        assert_eq!(at("2025-06-01_08:00"), eight);
        assert_eq!(at("2025-06-01T10:00:00+02:00"), eight);
        assert_eq!(at("2025-06-01T10:00:00+0200"), eight);
        assert_eq!(at("2025-06-01T08:00:00.1234567Z"), eight + 123_456);
        assert_eq!(at("2025-06-01T08:00:00,5"), eight + 500_000);
        assert_eq!(at("2025-06-01"), eight - 8 * 3600 * MICROS_PER_SEC);
        assert_eq!(at("1748764800"), eight);
        assert_eq!(at("1748764800000"), eight);
        assert_eq!(at("-1"), -MICROS_PER_SEC);
        assert_eq!(at(".5"), 500_000);
        assert_eq!(at("2000-02-29"), 951_782_400 * MICROS_PER_SEC);
    }

    #[test]
    fn garbage_gets_pydantics_error() {
        for (text, error) in [
            ("garbage", "input is too short"),
            ("", "input is too short"),
            (" 2025-06-01", "invalid character in year"),
            ("2025/06/01", "invalid date separator, expected `-`"),
            ("2025-ab-01", "invalid character in month"),
            (
                "2025-13-01",
                "month value is outside expected range of 1-12",
            ),
            ("2023-02-29", "day value is outside expected range"),
            (
                "2025-06-01T24:00:00",
                "unexpected extra characters at the end of the input",
            ),
            (
                "2025-06-01T08:00:00+02",
                "unexpected extra characters at the end of the input",
            ),
            (
                "2025-06-01 ",
                "unexpected extra characters at the end of the input",
            ),
            (
                "253402300800000",
                "dates after 9999 are not supported as unix timestamps",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(
                (e.kind, e.error),
                ("datetime_from_date_parsing", error),
                "{text:?}"
            );
        }
        assert_eq!(parse("0000-01-01").unwrap_err(), YEAR_ZERO);
    }
}
