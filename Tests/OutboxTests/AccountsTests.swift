import Outbox
import Testing
import TelematicsCore
@testable import Backend

@Suite("Accounts: identifiers, mailed links, the mail queue")
struct AccountsTests {
    static let now: Int64 = 1_764_000_000_000

    func portal() throws -> Portal { try Portal(path: backendDatabase(), rounds: 1_000) }

    @Test("a user name and a mobile number: accepted in their forms, refused otherwise", arguments: [
        ("Carla_M", "carla_m"), ("ana.b-2", "ana.b-2"), ("abc", "abc"),
        ("ab", nil), ("2ana", nil), ("a b", nil), ("+34600", nil), ("ana@x", nil), (String(repeating: "a", count: 33), nil), ("élise", nil),
    ] as [(String, String?)])
    func userNames(input: String, key: String?) {
        #expect((try? Portal.userNameKey(input)) == key)
    }

    @Test("mobile numbers are + and 8 to 15 digits; spaces, dots, hyphens and brackets are dropped", arguments: [
        ("+34 600 111 222", "+34600111222"), ("+49 (30) 1234-5678", "+493012345678"), ("+1.202.555.0100", "+12025550100"),
        ("0034600111222", nil), ("+0 600 111 222", nil), ("+34 6", nil), ("+34 600 111 222 333 444", nil), ("+34 600 11a 222", nil),
        ("+" + String(repeating: "1", count: 40), nil),
    ] as [(String, String?)])
    func mobiles(input: String, key: String?) {
        #expect((try? Portal.mobileKey(input)) == key)
    }

    @Test("a sign-up stores the account and its verification mail together; the link verifies once")
    func signUpAndVerify() throws {
        let p = try portal()
        var link = ""
        let account = try p.signUp(email: "Carla@Example.com", password: "correct horse", spin: "2468", userName: "Carla", mobile: "+34 600 111 222",
                                   link: { path in link = path; return "http://portal" + path }, nowMs: Self.now)
        #expect(account == .object([("email", .string("carla@example.com")), ("userName", .string("carla")),
                                    ("mobile", .string("+34600111222")), ("verified", .bool(false))]))
        let mails = try p.dueMails(nowMs: Self.now)
        #expect(mails.count == 1 && mails[0].mail.to == "carla@example.com" && mails[0].mail.text.contains("http://portal" + link))
        let token = String(link.split(separator: "=").last ?? "")
        #expect(try p.account(forLogin: "CARLA") == "carla@example.com")
        #expect(try p.account(forLogin: "+34 600 111 222") == "carla@example.com")
        #expect(try p.account(forLogin: "nobody") == nil)
        #expect(throws: PortalError.self) { try p.verifyEmail(token: token, nowMs: Self.now + Portal.verificationValidityMs) }
        // (An expired link is used up too: a new sign-up link is the way.)
        let again = try p.issueToken(email: "carla@example.com", purpose: "verify", validityMs: 1_000, nowMs: Self.now)
        #expect(try p.verifyEmail(token: again, nowMs: Self.now + 999) == "carla@example.com")
        #expect(throws: PortalError.self) { try p.verifyEmail(token: again, nowMs: Self.now + 999) }
        #expect(throws: PortalError.self) { try p.verifyEmail(token: "not hex", nowMs: Self.now) }
    }

    @Test("a taken user name or number refuses the sign-up whole: no account, no mail")
    func takenFieldsStoreNothing() throws {
        let p = try portal()
        _ = try p.signUp(email: "a@example.com", password: "correct horse", spin: "1234", userName: "ana", mobile: nil, link: { $0 }, nowMs: Self.now)
        for (name, mobile, code) in [("ANA", nil, "userNameTaken"), (nil, nil, "accountExists")] as [(String?, String?, String)] {
            let email = code == "accountExists" ? "a@example.com" : "b@example.com"
            #expect { try p.signUp(email: email, password: "correct horse", spin: "1234", userName: name, mobile: mobile, link: { $0 }, nowMs: Self.now) }
                throws: { ($0 as? PortalError)?.code == code }
        }
        #expect(try p.dueMails(nowMs: Self.now).count == 1)
        #expect(try p.account(forLogin: "b@example.com") == nil)
    }

    @Test("password resets: at most three mails an hour per account; nothing for an unknown one; the token changes the password once")
    func resets() throws {
        let p = try portal()
        try p.addUser(email: "ana@example.com", password: "correct horse", spin: "4711", userName: "ana", nowMs: Self.now)
        var links: [String] = []
        for minute in 0..<5 {
            try p.requestPasswordReset(login: "ana", link: { links.append($0); return $0 }, nowMs: Self.now + Int64(minute) * 60_000)
        }
        try p.requestPasswordReset(login: "nobody", link: { links.append($0); return $0 }, nowMs: Self.now)
        #expect(links.count == 3)
        try p.requestPasswordReset(login: "ana", link: { links.append($0); return $0 }, nowMs: Self.now + 3_600_001)
        #expect(links.count == 4)
        let token = String(links[0].split(separator: "=").last ?? "")
        #expect(throws: PortalError.self) { try p.resetPassword(token: token, new: "short", nowMs: Self.now) }
        #expect(try p.resetPassword(token: token, new: "battery staple!", nowMs: Self.now + 1) == "ana@example.com")
        #expect(try p.checkPassword(email: "ana@example.com", password: "battery staple!"))
        #expect(try p.passwordChangedAt(email: "ana@example.com") == Self.now + 1)
        // Every other reset link of the account went with it.
        let other = String(links[1].split(separator: "=").last ?? "")
        #expect(throws: PortalError.self) { try p.resetPassword(token: other, new: "another horse!", nowMs: Self.now + 2) }
    }

    @Test("delete my data: a wrong password counts as a log-in try and deletes nothing; the right one deletes every row naming the person, and their car's, in one go")
    func deleteAccount() throws {
        let path = backendDatabase()
        let p = try Portal(path: path, rounds: 1_000)
        for (email, spin) in [("ana@example.com", "4711"), ("ben@example.com", "1234")] {
            try p.addUser(email: email, password: "correct horse", spin: spin, nowMs: 0)
            try p.verifyEmail(email)
        }
        let car = try p.addCar(vin: "VSSZZZKLZNR012345", email: "ana@example.com", model: "Leon", built: "2021-11", country: "ES",
                               acceptedTerms: true, nowMs: 0)
        _ = try p.register(vin: car.vin, code: car.code, model: "Leon", built: "2021-11", country: "ES", privacy: nil, nowMs: 1)
        try p.share(vin: car.vin, owner: "ana@example.com", with: "ben@example.com", role: .secondary, nowMs: 2)
        // A portal's file alone (the vehicle store never opened): nothing of the car's to delete there.
        #expect(throws: PortalError.self) { try p.deleteAccount(email: "ana@example.com", password: "wrong horse!", nowMs: 3) }
        #expect(try p.account(forLogin: "ana@example.com") == "ana@example.com")
        #expect(try p.deleteAccount(email: "ana@example.com", password: "correct horse", nowMs: 4) == [car.vin])
        #expect(try p.account(forLogin: "ana@example.com") == nil && p.isInGarage(vin: car.vin) == false)
        #expect(try p.vehicles(of: "ben@example.com").isEmpty && p.users(vin: car.vin).isEmpty)
        // The licence stays with the car (the product page: it belongs to the vehicle).
        #expect(try p.licence(vin: car.vin).package == "trial")
    }

    @Test("a use case's transaction: a refusal inside rolls back what it wrote and comes out as it was; a success commits")
    func portalTransaction() throws {
        let p = try portal()
        #expect(throws: PortalError("nope", "refused inside")) {
            try p.transaction { () throws(PortalError) in
                try p.run("INSERT INTO backend_keys(name, value) VALUES ('x', 'y')", [])
                throw PortalError("nope", "refused inside")
            }
        }
        #expect(try p.query("SELECT value FROM backend_keys WHERE name = 'x'", []) { $0.text(0) }.isEmpty)
        try p.transaction { () throws(PortalError) in try p.run("INSERT INTO backend_keys(name, value) VALUES ('x', 'z')", []) }
        #expect(try p.query("SELECT value FROM backend_keys WHERE name = 'x'", []) { $0.text(0) } == ["z"])
    }

    @Test("a mail the server refused is tried again after 30 s, doubling to an hour; dropped after three days; a sent one is not kept")
    func mailQueue() throws {
        let p = try portal()
        _ = try p.signUp(email: "c@example.com", password: "correct horse", spin: "1234", userName: nil, mobile: nil, link: { $0 }, nowMs: Self.now)
        let id = try #require(try p.dueMails(nowMs: Self.now).first?.id)
        var at = Self.now
        for wait: Int64 in [30_000, 60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000, 3_600_000, 3_600_000] {
            #expect(try p.mailFailed(id: id, error: "450 try later", nowMs: at))
            #expect(try p.dueMails(nowMs: at + wait - 1).isEmpty)
            #expect(try p.dueMails(nowMs: at + wait).count == 1)
            at += wait
        }
        #expect(try !p.mailFailed(id: id, error: "450", nowMs: Self.now + 3 * 86_400_000))
        #expect(try p.dueMails(nowMs: .max).isEmpty)
        _ = try p.signUp(email: "d@example.com", password: "correct horse", spin: "1234", userName: nil, mobile: nil, link: { $0 }, nowMs: Self.now)
        let next = try #require(try p.dueMails(nowMs: Self.now).first?.id)
        try p.mailSent(id: next)
        #expect(try p.dueMails(nowMs: .max).isEmpty)
    }

    @Test("a mail's text: RFC 5322 headers with CRLF, no line break smuggled into a header, the text after a blank line")
    func messageText() {
        let m = SMTPSender.message(Mail(to: "ana@example.com\r\nBcc: eve@example.com", subject: "Hi\nthere", text: "line 1\nline 2"),
                                   from: "SEAT CONNECT <no-reply@connect.example>", dateMs: 1_796_197_800_000, id: "7")
        #expect(m == "Date: Wed, 02 Dec 2026 07:50:00 +0000\r\nFrom: SEAT CONNECT <no-reply@connect.example>\r\n"
                + "To: ana@example.comBcc: eve@example.com\r\nSubject: Hithere\r\nMessage-ID: <7@connect.example>\r\nMIME-Version: 1.0\r\n"
                + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nline 1\r\nline 2\r\n")
        #expect(SMTPSender.address(of: "SEAT CONNECT <no-reply@connect.example>") == "no-reply@connect.example")
        #expect(SMTPSender.address(of: "plain@example.com") == "plain@example.com")
    }

    @Test("processes opening a new database at once all find the schema whole (the migrations are one transaction)")
    func concurrentMigrations() async {
        for _ in 0..<10 {
            let path = backendDatabase()
            let failures = await withTaskGroup(of: String?.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        do { _ = try Portal(path: path, rounds: 1); return nil } catch { return "\(error)" }
                    }
                }
                return await group.compactMap { $0 }.reduce(into: [String]()) { $0.append($1) }
            }
            #expect(failures.isEmpty, "\(failures)")
        }
    }

    @Test("a file from before user names, mobile numbers and mailed links is brought to the schema's version once; its accounts keep working")
    func migratesAnOlderFile() throws {
        let path = backendDatabase()
        let old = try Database(path)
        try old.exec("""
            CREATE TABLE accounts(email TEXT PRIMARY KEY, salt TEXT NOT NULL, hash TEXT NOT NULL, spin_salt TEXT NOT NULL,
                spin_hash TEXT NOT NULL, rounds INTEGER NOT NULL, verified INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL);
            """)
        let p = try Portal(path: path, rounds: 1)
        try p.addUser(email: "ana@example.com", password: "correct horse", spin: "4711", userName: "ana", nowMs: Self.now)
        #expect(try p.account(forLogin: "ana") == "ana@example.com")
        #expect(try old.schemaVersion() == Portal.schemaVersion)
        let columns = try old.columns(of: "accounts")
        #expect(Set(["password_changed_at", "user_name", "mobile"]).isSubset(of: Set(columns)))
        // A newer program's file is left as it is.
        try old.setSchemaVersion(99)
        _ = try Portal(path: path, rounds: 1)
        #expect(try old.schemaVersion() == 99)
    }
}
