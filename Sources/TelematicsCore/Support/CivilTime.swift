/// Civil (calendar) time in UTC, proleptic Gregorian, with no clock and no Foundation: the
/// MSD's and NMEA's dates, and licences that run for whole months.

/// The civil date (year, month 1-12, day 1-31) of a day counted from 1970-01-01, proleptic
/// Gregorian (H. Hinnant's civil_from_days).
func civilDate(days: Int64) -> (year: Int64, month: Int64, day: Int64) {
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
}

/// The day counted from 1970-01-01 of a civil date (H. Hinnant's days_from_civil).
func civilDays(year: Int64, month: Int64, day: Int64) -> Int64 {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146_097 + doe - 719_468
}

/// `unixMs` moved on by whole calendar months, at the same time of day: a licence of 12
/// months from 2028-02-29 ends on 2029-03-01 (the day after 28 February: never a day short),
/// from 2027-01-31 plus one month on 2027-03-01. `months` from 0 to 1200; the time is
/// clamped to years 1970 to 9999.
public func addingCalendarMonths(_ months: Int, to unixMs: Int64) -> Int64 {
    let ms = min(max(unixMs, 0), 253_402_300_799_999)
    let days = ms / 86_400_000, timeOfDay = ms % 86_400_000
    let (y, m, d) = civilDate(days: days)
    let total = (m - 1) + Int64(min(max(months, 0), 1200))
    let year = y + total / 12, month = total % 12 + 1
    let nextMonth = month == 12 ? (year + 1, Int64(1)) : (year, month + 1)
    let lastDay = civilDays(year: nextMonth.0, month: nextMonth.1, day: 1) - civilDays(year: year, month: month, day: 1)
    let target = d <= lastDay ? civilDays(year: year, month: month, day: d) : civilDays(year: nextMonth.0, month: nextMonth.1, day: 1)
    return target * 86_400_000 + timeOfDay
}

/// A time as an Internet message's Date header writes it (RFC 5322, UTC):
/// `Wed, 02 Dec 2026 07:30:00 +0000`.
public func rfc5322Date(unixMs: Int64) -> String {
    let ms = max(0, unixMs)
    let days = ms / 86_400_000, inDay = (ms % 86_400_000) / 1000
    let (y, m, d) = civilDate(days: days)
    let weekdays = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    func two(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }
    return "\(weekdays[Int(days % 7)]), \(two(d)) \(months[Int(m - 1)]) \(y) \(two(inDay / 3600)):\(two(inDay / 60 % 60)):\(two(inDay % 60)) +0000"
}

/// A time as a person reads it on the portal, to the minute, UTC: `2026-12-02 07:50 UTC`.
public func readableDate(unixMs: Int64) -> String {
    let ms = min(max(0, unixMs), 253_402_300_799_999)
    let days = ms / 86_400_000, minutes = (ms % 86_400_000) / 60_000
    let (y, m, d) = civilDate(days: days)
    func two(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }
    return "\(y)-\(two(m))-\(two(d)) \(two(minutes / 60)):\(two(minutes % 60)) UTC"
}
