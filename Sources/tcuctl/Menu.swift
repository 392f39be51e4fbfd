import ArgumentParser
import Control
import Platform
import TelematicsCore
import VehicleBus

/// The head unit's menu in a terminal: Settings → Online services → Registration, Service
/// management (privacy), Licences, and the status; the Navigation screen (the Navi package's
/// online services). Every screen lists numbered choices and
/// 0 to go back; anything else is refused with a line that says so and the screen again.
struct MenuCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "menu",
        abstract: "The infotainment menu in a terminal: registration, privacy, licences, status, navigation.",
        discussion: "Type the number of a choice and Enter; 0 goes back. The same actions exist as plain subcommands for scripts: tcuctl register, tcuctl privacy, tcuctl status."
    )

    @OptionGroup var options: SocketOption

    func run() throws {
        var menu = Menu(socket: options.socket)
        menu.settings()
        print("Goodbye.")
    }
}

struct Menu {
    let socket: String

    /// One request; a daemon that does not answer is shown, not fatal.
    func request(_ body: ControlRequest, timeoutMs: Int = 5_000) -> JSON? {
        do { return try ControlClient.request(socket, body.json, timeoutMs: timeoutMs) } catch {
            print("The unit does not answer (\(error)).")
            return nil
        }
    }

    func status() -> JSON? { request(.status) }

    /// Shows a screen until a valid choice; nil on 0 or the end of input.
    func choose(_ title: String, _ lines: [String], _ choices: [String]) -> Int? {
        while true {
            print("")
            print("== \(title)")
            for l in lines { print("   \(l)") }
            for (i, c) in choices.enumerated() { print(" \(i + 1)) \(c)") }
            print(" 0) Back")
            print("> ", terminator: "")
            guard let line = readLine()?.trimmingCharacters() else { return nil }
            if line == "0" { return nil }
            if let n = Int(line), n >= 1, n <= choices.count { return n }
            print("Choose one of the numbers shown.")
        }
    }

    mutating func settings() {
        while true {
            // An SOS call in its cancellation window can be cancelled from here, as in the car.
            let pending = status()?["ecall"]?["phase"]?.stringValue == "manualPending"
            var choices = ["Online services", "Status", "User"]
            if pending { choices.append("Cancel the emergency call") }
            choices.append("Navigation")
            guard let c = choose("Settings", pending ? ["An emergency call is about to be placed."] : [], choices) else { return }
            switch choices[c - 1] {
            case "Online services": onlineServices()
            case "Status": showStatus()
            case "User": user()
            case "Navigation": navigation()
            default:
                guard let reply = request(.eCall(.cancel)) else { continue }
                print(reply["ok"]?.boolValue == true ? "The emergency call is cancelled." : "It cannot be cancelled now (\(reply["error"]?.stringValue ?? "?")).")
            }
        }
    }

    mutating func onlineServices() {
        while true {
            let st = status()
            let reg = st?["registration"]?["status"]?.stringValue ?? "unknown"
            let privacy = st?["privacy"]?.stringValue ?? "unknown"
            guard let c = choose("Settings › Online services", ["Registration: \(reg)", "Privacy: \(Self.privacyName(privacy))"],
                                 ["Registration", "Service management", "Licences"]) else { return }
            switch c {
            case 1: registration()
            case 2: serviceManagement()
            default: licences()
            }
        }
    }

    mutating func registration() {
        while true {
            let r = status()?["registration"]
            var lines = ["State: \(r?["status"]?.stringValue ?? "unknown")"]
            if let user = r?["user"]?.stringValue { lines.append("Primary user: \(user)") }
            guard let c = choose("Online services › Registration", lines, ["Enter the pairing code", "Activation assistant"]) else { return }
            if c == 1 { enterCode() } else { assistant() }
        }
    }

    /// Asks for one line; nil on "0" or the end of input.
    func ask(_ prompt: String, secret: Bool = false) -> String? {
        func promptAndRead() -> String? {
            // (Reading standard input flushes the prompt.)
            print("\(prompt) (0 to go back): ", terminator: "")
            return readLine()?.trimmingCharacters()
        }
        // A password or an S-PIN is not shown on the screen (a head unit shows dots).
        let line = secret ? SecretInput.withoutEcho(promptAndRead) : promptAndRead()
        if secret, SecretInput.interactive { print("") }
        guard let line, line != "0" else { return nil }
        return line
    }

    /// The in-car activation assistant: without a SEAT ID the user creates one; with one (its
    /// e-mail address verified) the user logs in, reads and accepts the terms and the privacy
    /// policy, and the car is added to the garage and registered in one go.
    func assistant() {
        while true {
            guard let c = choose("Registration › Activation assistant", ["Register this car without the portal."],
                                 ["I have a SEAT ID: log in", "Create a SEAT ID"]) else { return }
            if c == 2 {
                guard let email = ask("E-mail address"), let password = ask("Password (at least 10 characters)", secret: true) else { continue }
                var spin: String?
                while spin == nil {
                    guard let s = ask("S-PIN for remote functions (4 digits)", secret: true) else { break }
                    if s.count == 4, s.allSatisfy({ $0.isASCII && $0.isNumber }) { spin = s } else { print("The S-PIN is 4 digits.") }
                }
                guard let spin else { continue }
                print("Creating the account...")
                guard let reply = request(.createAccount(email: email, password: password, spin: spin), timeoutMs: interactiveTimeoutMs) else { continue }
                if let refusal = RegistrationReply.refusal(in: reply) {
                    print("The account was not created (\(refusal.code)). \(refusal.advice)")
                } else {
                    print("Account created. \(reply["advice"]?.stringValue ?? "")")
                }
                continue
            }
            guard let email = ask("E-mail address"), let password = ask("Password", secret: true) else { continue }
            guard choose("Activation assistant › Terms", [
                "Terms of use: the online services are provided for this car while its licence is valid.",
                "Privacy policy: the car sends its state, events and (if you allow it) its position to the",
                "service; you choose what in Service management, and can delete everything with a factory reset.",
            ], ["I accept the terms of use and the privacy policy"]) != nil else {
                print("Without accepting them the car cannot be registered.")
                continue
            }
            print("Adding the car to your garage and registering...")
            guard let reply = request(.addCar(email: email, password: password, acceptedTerms: true), timeoutMs: interactiveTimeoutMs) else { continue }
            guard let refusal = RegistrationReply.refusal(in: reply) else {
                print("Registered. Primary user: \(reply["registration"]?["user"]?.stringValue ?? "?")")
                return
            }
            for line in refusal.menuLines("Registration failed") { print(line) }
        }
    }

    func enterCode() {
        while true {
            print("Pairing code from the portal (8 digits; 0 to go back): ", terminator: "")
            guard let code = readLine()?.trimmingCharacters(), code != "0" else { return }
            guard isPairingCode(code) else {
                print("The code is 8 digits, nothing else.")
                continue
            }
            print("Registering...")
            guard let reply = request(.register(code: code), timeoutMs: interactiveTimeoutMs) else { return }
            if let refusal = RegistrationReply.refusal(in: reply) {
                for line in refusal.menuLines("Registration failed") { print(line) }
            } else {
                print("Registered. Primary user: \(reply["registration"]?["user"]?.stringValue ?? "?")")
            }
            return
        }
    }

    static func privacyName(_ raw: String) -> String {
        switch raw {
        case "shareMyPosition": "Share my position"
        case "useMyPosition": "Use my position"
        case "offline": "Offline"
        default: raw
        }
    }

    func serviceManagement() {
        while true {
            let current = status()?["privacy"]?.stringValue ?? "unknown"
            guard let c = choose("Online services › Service management", [
                "Privacy: \(Self.privacyName(current))",
                "Share my position: everything the services need, positions included.",
                "Use my position: the car uses its position but never sends it.",
                "Offline: nothing leaves the car but the legal eCall.",
            ], ["Share my position", "Use my position", "Offline"]) else { return }
            let word = ["share", "use", "offline"][c - 1]
            if let reply = request(.privacy(PrivacyMode(word: word))) {
                print("Privacy: \(Self.privacyName(reply["privacy"]?.stringValue ?? "?"))")
            }
        }
    }

    func licences() {
        while true {
            let r = status()?["registration"]
            var lines: [String] = []
            let registered = r?["status"]?.stringValue == "completed"
            if registered, let until = r?["licenceExpiresAt"]?.integer() {
                lines.append("Licence valid until \(utcText(until / 1000))")
                lines.append("Services: " + (r?["services"]?.arrayValue?.compactMap(\.stringValue).joined(separator: ", ") ?? ""))
            } else {
                lines.append("No licence: register the car first.")
            }
            let offers = [("radio", 1, "Radio, 1 year (50 €)"), ("radio", 2, "Radio, 2 years (85 €)"),
                          ("navi", 1, "Navi, 1 year (135 €)"), ("navi", 2, "Navi, 2 years (225 €)")]
            guard let c = choose("Online services › Licences", lines, registered ? offers.map { "Renew: \($0.2)" } : []) else { return }
            let (package, years, _) = offers[c - 1]
            print("Renewing...")
            guard let reply = request(.renewLicence(package: package, years: years),
                                      timeoutMs: interactiveTimeoutMs) else { continue }
            if let refusal = RegistrationReply.refusal(in: reply) {
                print("The renewal failed (\(refusal.code)). \(refusal.advice)")
            } else {
                print("Renewed.")
            }
        }
    }

    /// The infotainment's User screen, where the product page's FAQ sends an owner who sells
    /// the car: "Utilisateur" › "Supprimer utilisateur / Restaurer les réglages d'usine".
    func user() {
        while true {
            let user = status()?["registration"]?["user"]?.stringValue
            guard choose("User", [user.map { "Primary user: \($0)" } ?? "No user."],
                         ["Delete user / restore factory settings"]) != nil else { return }
            print("This deletes the registration, the parking position, the privacy choice and all queued data in the car,")
            print("and asks the server to delete the car's data. Type YES to go on, anything else to go back: ", terminator: "")
            guard readLine()?.trimmingCharacters() == "YES" else {
                print("Nothing was deleted.")
                continue
            }
            if let reply = request(.factoryReset) {
                print(reply["ok"]?.boolValue == true ? "Factory settings restored." : "The reset failed: \(reply["error"]?.stringValue ?? "?")")
            }
        }
    }

    func showStatus() {
        guard let st = status() else { return }
        var lines = ["VIN: \(st["vehicle"]?["vin"]?.stringValue ?? "?")"]
        lines.append("Backend link: \(st["outbox"]?["backend"]?["connected"]?.boolValue == true ? "connected" : "not connected")")
        lines.append("eCall: \(st["ecall"]?["phase"]?.stringValue ?? "?")")
        if let fix = st["gnss"]?["fix"]?.stringValue { lines.append("GNSS: \(fix)") }
        lines.append("Privacy: \(Self.privacyName(st["privacy"]?.stringValue ?? "?"))")
        lines.append("Registration: \(st["registration"]?["status"]?.stringValue ?? "?")")
        _ = choose("Settings › Status", lines, [])
    }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s.removeLast() }
        return String(s)
    }
}

extension Menu {
    /// The Navigation screen: the Navi package's online services from the car's position
    /// (route, fuel, parking, traffic) and the voice control, typed.
    func navigation() {
        while true {
            let choices = ["Route to a destination", "Nearest fuel stations", "Nearest parking", "Traffic around the car", "Voice command"]
            guard let c = choose("Navigation", ["Online infotainment (SEAT CONNECT Navi)"], choices) else { return }
            let navi: NaviRequest
            switch c {
            case 1:
                guard let to = ask("Destination: an address, a place or LAT,LON (0 to go back)") else { continue }
                guard let place = NaviPlace(text: to) else {
                    print("That is not a destination: an address, a place or LAT,LON.")
                    continue
                }
                navi = .route(from: .here, to: place)
            case 2: navi = .nearest(.fuel, near: .here, cheapest: false)
            case 3: navi = .nearest(.parking, near: .here, cheapest: false)
            case 4: navi = .traffic(near: .here, radiusM: 5_000)
            default:
                guard let sentence = ask("Say it, in French or English (0 to go back)") else { continue }
                guard sentence.count <= NaviRequest.maximumTextLength else {
                    print("That is too long: at most \(NaviRequest.maximumTextLength) characters.")
                    continue
                }
                navi = .say(sentence, near: .here)
            }
            print("Asking the online services...")
            guard let reply = request(.navi(navi, language: .en), timeoutMs: interactiveTimeoutMs) else { continue }
            guard reply["ok"]?.boolValue == true else {
                let codes = (reply["statusCodes"]?.arrayValue ?? []).compactMap { $0.integer() }.map(String.init)
                print("Not available: \(reply["message"]?.stringValue ?? reply["error"]?.stringValue ?? "refused")"
                      + (codes.isEmpty ? "" : " (status \(codes.joined(separator: ", ")))"))
                continue
            }
            if let display = reply["display"]?.stringValue { print(display) }
            showResults(reply["results"])
            showRoute(reply["route"])
            showRecords(reply["records"])
        }
    }
}
