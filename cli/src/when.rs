//! Times as the CLI reads and prints them: ages (`30m`, `2h`, `7d`), durations, UTC timestamps.

/// `30m`, `2h`, `7d`, `45s` ago, or a time in ms since the epoch.
pub fn parse_time(raw: &str) -> Result<i64, String> {
    if let Ok(ms) = raw.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || format!("expected ms since the epoch or an age like 30m, 2h, 7d; got {raw:?}");
    let split = raw.char_indices().last().map_or(0, |(i, _)| i);
    let (n, unit) = raw.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit in {raw:?}: use s, m, h or d")),
    };
    n.checked_mul(per)
        .and_then(|s| s.checked_mul(1000))
        .and_then(|ms| now_ms().checked_sub(ms))
        .ok_or_else(bad)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `ms` as `YYYY-MM-DD hh:mm:ss` UTC.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
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
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// A duration of `ms` for a person: `850 ms`, `12.3 s`, `4m 58s`, `3h 2m`, `2d 5h`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m {}s", ms / 60_000, ms / 1000 % 60),
        3_600_000..86_400_000 => format!("{}h {}m", ms / 3_600_000, ms / 60_000 % 60),
        _ => format!("{}d {}h", ms / 86_400_000, ms / 3_600_000 % 24),
    }
}

/// `30m`, `2h`, `7d`, `45s`, `500ms` as ms.
pub fn parse_duration(raw: &str) -> Result<i64, String> {
    let bad = || format!("expected a duration like 500ms, 45s, 30m, 2h, 7d; got {raw:?}");
    let digits = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (n, unit) = raw.split_at(digits);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let per = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(per).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_709_251_199_000), "2024-02-29 23:59:59");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
    }

    #[test]
    fn ages_and_times_parse() {
        assert_eq!(parse_time("1700000000000"), Ok(1_700_000_000_000));
        let an_hour_ago = parse_time("1h").unwrap_or(0);
        assert!((now_ms() - an_hour_ago - 3_600_000).abs() < 5_000);
        assert!(parse_time("1y").is_err());
        assert!(parse_time("soon").is_err());
        assert!(parse_time("5µ").is_err());
        assert!(parse_time("é").is_err());
        assert!(parse_time("9223372036854775807d").is_err());
    }

    #[test]
    fn durations_print_and_parse() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_340), "12.3 s");
        assert_eq!(duration(298_000), "4m 58s");
        assert_eq!(duration(3 * 3_600_000 + 120_000), "3h 2m");
        assert_eq!(duration(-5), "0 ms");
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("45s"), Ok(45_000));
        assert_eq!(parse_duration("2h"), Ok(7_200_000));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("9223372036854775807d").is_err());
    }
}
