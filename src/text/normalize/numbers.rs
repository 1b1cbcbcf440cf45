//! Numbers: amounts, money, clock times, decades, dates, years, fractions,
//! units, and symbols in front of numbers.

use super::{Token, MONTH_ABBREVIATIONS};

/// `digits[,ddd]*[.digits]` split into integer and fraction parts.
fn parse_amount(s: &str) -> Option<(&str, Option<&str>)> {
    let (int, frac) = match s.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (s, None),
    };
    let mut groups = int.split(',');
    let first = groups.next()?;
    let int_ok = (1..=3).contains(&first.len()) || (!int.contains(',') && !first.is_empty());
    let ok = int_ok
        && first.bytes().all(|b| b.is_ascii_digit())
        && groups.all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit()))
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
    ok.then_some((int, frac))
}

fn is_number(s: &str) -> bool {
    parse_amount(s.strip_prefix('-').unwrap_or(s)).is_some()
}

fn is_one(s: &str) -> bool {
    matches!(parse_amount(s), Some(("1", None)))
        || matches!(parse_amount(s), Some(("1", Some(f))) if f.bytes().all(|b| b == b'0'))
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A currency: symbol, unit (singular, plural), minor unit (singular, plural).
struct Currency {
    symbol: char,
    unit: (&'static str, &'static str),
    minor: Option<(&'static str, &'static str)>,
}

const CURRENCIES: &[Currency] = &[
    Currency {
        symbol: '$',
        unit: ("dollar", "dollars"),
        minor: Some(("cent", "cents")),
    },
    Currency {
        symbol: '€',
        unit: ("euro", "euros"),
        minor: Some(("cent", "cents")),
    },
    Currency {
        symbol: '£',
        unit: ("pound", "pounds"),
        minor: Some(("penny", "pence")),
    },
    Currency {
        symbol: '¥',
        unit: ("yen", "yen"),
        minor: None,
    },
    Currency {
        symbol: '₹',
        unit: ("rupee", "rupees"),
        minor: None,
    },
];

const SCALES: &[(&str, &str)] = &[
    ("k", "thousand"),
    ("K", "thousand"),
    ("m", "million"),
    ("M", "million"),
    ("mn", "million"),
    ("b", "billion"),
    ("B", "billion"),
    ("bn", "billion"),
    ("t", "trillion"),
    ("T", "trillion"),
    ("tn", "trillion"),
];
const SCALE_WORDS: &[&str] = &["thousand", "million", "billion", "trillion"];

/// `$5`, `-$5.99`, `5$`, `€1,000`, `$5m`; `$5` before "million" keeps only
/// the number (see [`scale_after_money`]).
pub(super) fn money(core: &str, next: Option<&str>) -> Option<String> {
    let (minus, body) = match core.strip_prefix('-') {
        Some(rest) => ("minus ", rest),
        None => ("", core),
    };
    let (currency, amount) = CURRENCIES.iter().find_map(|c| {
        let amount = body
            .strip_prefix(c.symbol)
            .or_else(|| body.strip_suffix(c.symbol))?;
        Some((c, amount))
    })?;
    let scale = SCALES
        .iter()
        .find_map(|&(suffix, word)| Some((amount.strip_suffix(suffix)?, word)));
    if let Some((number, word)) = scale.filter(|(n, _)| parse_amount(n).is_some()) {
        return Some(format!("{minus}{number} {word} {}", currency.unit.1));
    }
    let (int, frac) = parse_amount(amount)?;
    if next.is_some_and(|n| SCALE_WORDS.contains(&n)) {
        return Some(format!("{minus}{amount}"));
    }
    let unit = |count: &str| {
        if is_one(count) {
            currency.unit.0
        } else {
            currency.unit.1
        }
    };
    let spoken = match (frac, currency.minor) {
        (None, _) => format!("{int} {}", unit(int)),
        (Some(f), _) if f.bytes().all(|b| b == b'0') => format!("{int} {}", unit(int)),
        (Some(f), Some(minor)) if f.len() <= 2 => {
            let cents = format!("{f:0<2}").trim_start_matches('0').to_string();
            let minor = if cents == "1" { minor.0 } else { minor.1 };
            if int.trim_start_matches('0').is_empty() {
                format!("{cents} {minor}")
            } else {
                format!("{int} {} and {cents} {minor}", unit(int))
            }
        }
        (Some(_), _) => format!("{amount} {}", currency.unit.1),
    };
    Some(format!("{minus}{spoken}"))
}

/// The "million" of `$5 million` becomes "million dollars".
pub(super) fn scale_after_money(core: &str, prev: Option<&str>) -> Option<String> {
    if !SCALE_WORDS.contains(&core) {
        return None;
    }
    let prev = prev?;
    let prev = prev.strip_prefix('-').unwrap_or(prev);
    CURRENCIES
        .iter()
        .find(|c| {
            prev.strip_prefix(c.symbol)
                .or_else(|| prev.strip_suffix(c.symbol))
                .is_some_and(|a| parse_amount(a).is_some())
        })
        .map(|c| format!("{core} {}", c.unit.1))
}

/// `6:00` -> "6 o'clock", `10:05` -> "10 oh 5"; `3:30` is left to espeak-ng.
pub(super) fn clock_time(core: &str, next: Option<&str>) -> Option<String> {
    let lower = core.to_ascii_lowercase();
    let (time, suffix) = ["am", "pm", "a.m", "p.m"]
        .iter()
        .find_map(|s| Some((lower.strip_suffix(s)?, &core[core.len() - s.len()..])))
        .unwrap_or((&lower, ""));
    let (hours, minutes) = time.split_once(':')?;
    let h: u32 = hours
        .parse()
        .ok()
        .filter(|_| digits(hours) && hours.len() <= 2)?;
    if h > 24 || minutes.len() != 2 || !digits(minutes) || minutes >= "60" {
        return None;
    }
    let suffix = if suffix.is_empty() {
        String::new()
    } else {
        format!(" {suffix}")
    };
    let meridiem = !suffix.is_empty()
        || next.is_some_and(|n| {
            matches!(n.to_ascii_lowercase().as_str(), "am" | "pm" | "a.m" | "p.m")
        });
    match minutes.as_bytes() {
        [b'0', b'0'] if meridiem => Some(format!("{h}{suffix}")),
        [b'0', b'0'] => Some(format!("{h} o'clock")),
        [b'0', m] => Some(format!("{h} oh {}{suffix}", *m as char)),
        _ => None,
    }
}

const TENS: &[&str] = &[
    "",
    "tens",
    "twenties",
    "thirties",
    "forties",
    "fifties",
    "sixties",
    "seventies",
    "eighties",
    "nineties",
];

/// `1990s` -> "19 nineties", `'90s`/`90s` -> "nineties", `1900s` -> "19 hundreds".
pub(super) fn decade(core: &str) -> Option<String> {
    let number = core.trim_start_matches('\'').strip_suffix('s')?;
    if !digits(number) || number.len() < 2 || !number.ends_with('0') {
        return None;
    }
    let tens = TENS[usize::from(number.as_bytes()[number.len() - 2] - b'0')];
    match number.len() {
        2 if !tens.is_empty() => Some(tens.to_string()),
        4 if number.starts_with("20") && &number[2..] == "00" => Some("two thousands".into()),
        4 if &number[2..] == "00" => Some(format!("{} hundreds", &number[..2])),
        4 if !tens.is_empty() => Some(format!("{} {tens}", &number[..2])),
        _ => None,
    }
}

const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// `5/12/2024` (US order) and `2024-05-12` -> "May 12th, 20 24".
pub(super) fn date(core: &str) -> Option<String> {
    let parts: Vec<&str> = if core.contains('/') {
        core.split('/').collect()
    } else {
        core.split('-').collect()
    };
    let [a, b, c] = parts[..] else { return None };
    if !(digits(a) && digits(b) && digits(c)) {
        return None;
    }
    let (year, month, day) = match (core.contains('/'), a.len(), b.len(), c.len()) {
        (true, 1..=2, 1..=2, 4) => (c, a, b),
        (false, 4, 2, 2) => (a, b, c),
        _ => return None,
    };
    let month: usize = month.parse().ok()?;
    let day: u32 = day.parse().ok()?;
    let name = MONTHS.get(month.checked_sub(1)?)?;
    if !(1..=31).contains(&day) {
        return None;
    }
    let year = year_words(year).unwrap_or_else(|| year.to_string());
    Some(format!("{name} {}, {year}", ordinal(day)))
}

fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Words before a number that make it a year.
const YEAR_CUES: &[&str] = &[
    "in", "In", "since", "Since", "from", "From", "until", "Until", "till", "by", "By", "year",
    "Year", "circa", "during", "During", "before", "Before", "after", "After",
];

/// `1995` -> "19 95", `1905` -> "19 oh 5", `2024` -> "20 24" when a cue word
/// or a month comes first (`in 1995`, `May 5, 1995`, `June 2024`).
pub(super) fn year(core: &str, i: usize, tokens: &[Token<'_>]) -> Option<String> {
    let prev = |k: usize| i.checked_sub(k).map(|j| tokens[j].core);
    let month = |w: Option<&str>| {
        w.is_some_and(|w| MONTHS.contains(&w) || MONTH_ABBREVIATIONS.iter().any(|(a, _)| *a == w))
    };
    let day_then_month = prev(1)
        .is_some_and(|d| d.len() <= 4 && d.starts_with(|c: char| c.is_ascii_digit()))
        && month(prev(2));
    let cued = prev(1).is_some_and(|w| YEAR_CUES.contains(&w)) || month(prev(1)) || day_then_month;
    if !cued {
        return None;
    }
    year_words(core)
}

/// The spoken form of a year in 1100..=1999 or 2010..=2099 (others are read
/// well by espeak-ng: "nineteen hundred", "two thousand five").
fn year_words(year: &str) -> Option<String> {
    if year.len() != 4 || !digits(year) {
        return None;
    }
    let value: u32 = year.parse().ok()?;
    let (high, low) = (value / 100, value % 100);
    match value {
        1100..=1999 | 2010..=2099 if low == 0 => None,
        1100..=1999 | 2010..=2099 if low < 10 => Some(format!("{high} oh {low}")),
        1100..=1999 | 2010..=2099 => Some(format!("{high} {low}")),
        _ => None,
    }
}

/// Fractions, `24/7`, `w/` and `w/o`.
pub(super) fn slash_word(core: &str) -> Option<String> {
    let word = match core {
        "1/2" => "one half",
        "1/3" => "one third",
        "2/3" => "two thirds",
        "1/4" => "one quarter",
        "3/4" => "three quarters",
        "24/7" => "24 7",
        "w/" | "W/" => "with",
        "w/o" | "W/O" => "without",
        _ => return None,
    };
    Some(word.to_string())
}

/// A unit abbreviation: (abbreviation, singular, plural, may follow the number
/// without a space).
const UNITS: &[(&str, &str, &str, bool)] = &[
    ("km", "kilometer", "kilometers", true),
    ("cm", "centimeter", "centimeters", true),
    ("mm", "millimeter", "millimeters", true),
    ("kg", "kilogram", "kilograms", true),
    ("mg", "milligram", "milligrams", true),
    ("g", "gram", "grams", false),
    ("lb", "pound", "pounds", true),
    ("lbs", "pounds", "pounds", true),
    ("oz", "ounce", "ounces", true),
    ("ft", "foot", "feet", true),
    ("yd", "yard", "yards", true),
    ("mi", "mile", "miles", false),
    ("ml", "milliliter", "milliliters", true),
    ("mL", "milliliter", "milliliters", true),
    ("L", "liter", "liters", false),
    ("hr", "hour", "hours", true),
    ("hrs", "hours", "hours", true),
    ("min", "minute", "minutes", true),
    ("mins", "minutes", "minutes", true),
    ("sec", "second", "seconds", true),
    ("secs", "seconds", "seconds", true),
    ("ms", "millisecond", "milliseconds", true),
    ("KB", "kilobyte", "kilobytes", true),
    ("MB", "megabyte", "megabytes", true),
    ("GB", "gigabyte", "gigabytes", true),
    ("TB", "terabyte", "terabytes", true),
    ("km/h", "kilometer per hour", "kilometers per hour", true),
    ("kph", "kilometer per hour", "kilometers per hour", true),
    ("°C", "degree Celsius", "degrees Celsius", true),
    ("°F", "degree Fahrenheit", "degrees Fahrenheit", true),
];

/// `5 km` (after a number) or `5km` -> "5 kilometers".
pub(super) fn unit(core: &str, prev: Option<&str>) -> Option<String> {
    let spoken = |count: &str, singular: &'static str, plural: &'static str| {
        if is_one(count) {
            singular
        } else {
            plural
        }
    };
    if let Some(count) = prev.filter(|p| is_number(p)) {
        if let Some(&(_, singular, plural, _)) = UNITS.iter().find(|u| u.0 == core) {
            return Some(spoken(count, singular, plural).to_string());
        }
    }
    UNITS
        .iter()
        .filter(|u| u.3)
        .find_map(|&(abbreviation, singular, plural, _)| {
            let count = core.strip_suffix(abbreviation)?;
            is_number(count).then(|| format!("{count} {}", spoken(count, singular, plural)))
        })
}

/// `#1` -> "number 1", `# of` -> "number of", a leading `#` heading marker is
/// dropped; `~5` -> "about 5"; `.5` -> "0.5".
pub(super) fn symbol_prefix(core: &str, i: usize, next: Option<&str>) -> Option<String> {
    if let Some(rest) = core.strip_prefix('#') {
        if rest.starts_with(|c: char| c.is_ascii_digit()) {
            return Some(format!("number {rest}"));
        }
        if rest.chars().all(|c| c == '#') {
            return match next {
                Some("of") => Some("number".into()),
                _ if i == 0 => Some(String::new()),
                _ => None,
            };
        }
    }
    if let Some(rest) = core.strip_prefix('~').filter(|r| is_number(r)) {
        return Some(format!("about {rest}"));
    }
    core.strip_prefix('.')
        .filter(|r| digits(r))
        .map(|r| format!("0.{r}"))
}
