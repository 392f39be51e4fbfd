import Testing
@testable import TelematicsCore

@Suite("Civil time: whole calendar months")
struct CivilTimeTests {
    /// Unix milliseconds of a UTC civil date and time.
    func ms(_ y: Int64, _ m: Int64, _ d: Int64, _ hour: Int64 = 0) -> Int64 { civilDays(year: y, month: m, day: d) * 86_400_000 + hour * 3_600_000 }

    @Test("days and dates are each other's inverse over four centuries")
    func roundTrip() {
        for days in stride(from: Int64(0), through: 146_097 + 20_000, by: 7) {
            let (y, m, d) = civilDate(days: days)
            #expect(civilDays(year: y, month: m, day: d) == days)
        }
        #expect(civilDays(year: 1970, month: 1, day: 1) == 0)
        #expect(civilDays(year: 2000, month: 3, day: 1) == 11_017)
    }

    @Test("12 months later is the same day and time next year, never a day short", arguments: [
        // from, months, to
        ((2025, 12, 2, 10), 12, (2026, 12, 2, 10)),
        ((2028, 2, 29, 8), 12, (2029, 3, 1, 8)),      // no 29 February next year: the day after the 28th
        ((2027, 1, 31, 0), 1, (2027, 3, 1, 0)),       // no 31 February
        ((2027, 3, 31, 0), 1, (2027, 5, 1, 0)),       // no 31 April
        ((2027, 12, 15, 23), 1, (2028, 1, 15, 23)),   // over the year's end
        ((2028, 2, 29, 0), 48, (2032, 2, 29, 0)),     // four years: a 29 February again
        ((2026, 6, 30, 12), 24, (2028, 6, 30, 12)),
        ((2026, 6, 30, 12), 0, (2026, 6, 30, 12)),
    ])
    func months(from: (Int64, Int64, Int64, Int64), months: Int, to: (Int64, Int64, Int64, Int64)) {
        let start = ms(from.0, from.1, from.2, from.3)
        let end = addingCalendarMonths(months, to: start)
        #expect(end == ms(to.0, to.1, to.2, to.3))
        #expect(end - start >= Int64(months) * 28 * 86_400_000)
    }

    @Test("12 calendar months are never shorter than the days they cover: 365 or 366")
    func neverShort() {
        for day in stride(from: civilDays(year: 2026, month: 1, day: 1), to: civilDays(year: 2034, month: 1, day: 1), by: 1) {
            let start = day * 86_400_000
            let (y, m, d) = civilDate(days: day)
            let end = addingCalendarMonths(12, to: start)
            let leapSpan = civilDays(year: y + 1, month: m, day: 1) - civilDays(year: y, month: m, day: 1) == 366
            #expect((end - start) / 86_400_000 == (leapSpan ? 366 : 365) || (m == 2 && d == 29))
            #expect(end - start >= 365 * 86_400_000)
        }
    }

    @Test("outside numbers are clamped, never a trap")
    func outside() {
        #expect(addingCalendarMonths(12, to: -5) == ms(1971, 1, 1))
        #expect(addingCalendarMonths(Int.max, to: 0) == ms(2070, 1, 1))
        #expect(addingCalendarMonths(-3, to: ms(2026, 5, 5)) == ms(2026, 5, 5))
        _ = addingCalendarMonths(1200, to: .max)
    }

    @Test("a Date header's form: the weekday, the day, the month's name, UTC", arguments: [
        (Int64(0), "Thu, 01 Jan 1970 00:00:00 +0000"), (Int64(951_782_400_000), "Tue, 29 Feb 2000 00:00:00 +0000"),
        (Int64(1_796_197_800_000), "Wed, 02 Dec 2026 07:50:00 +0000"), (Int64(-5), "Thu, 01 Jan 1970 00:00:00 +0000"),
    ])
    func rfc5322(ms: Int64, text: String) {
        #expect(rfc5322Date(unixMs: ms) == text)
    }

    @Test("the portal's dates: to the minute, UTC, clamped to years 1970 to 9999", arguments: [
        (Int64(0), "1970-01-01 00:00 UTC"), (Int64(951_782_400_000), "2000-02-29 00:00 UTC"),
        (Int64(1_796_197_859_999), "2026-12-02 07:50 UTC"), (Int64(-5), "1970-01-01 00:00 UTC"), (Int64.max, "9999-12-31 23:59 UTC"),
    ])
    func readable(ms: Int64, text: String) {
        #expect(readableDate(unixMs: ms) == text)
    }
}
