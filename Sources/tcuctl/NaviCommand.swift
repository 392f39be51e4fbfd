import ArgumentParser
import Control
import Platform
import TelematicsCore

/// The head unit's Navigation screen from the command line: the Online infotainment services
/// of the Navi package (routes with traffic, parking, fuel with prices, traffic, the voice
/// control), answered by the backend at once or refused with the reason.
struct NaviCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "navi",
        abstract: "Online infotainment (the Navi package): route, nearest parking or fuel, traffic, voice.",
        discussion: """
            A place is "here" (the car's position, sent only with the privacy level share), \
            coordinates "LAT,LON", or a name on the map (an address, a street, a place, a POI). \
            Without the Navi licence, or offline, the request is refused with the service's status \
            code (exit status 75). --json prints the daemon's reply as it is.
            """,
        subcommands: [Route.self, Nearest.self, Traffic.self, Say.self]
    )

    struct Common: ParsableArguments {
        @OptionGroup var options: SocketOption
        @Option(help: "The head unit's language for the answer: fr or en.") var language: String = "en"
        @Flag(help: "Print the reply as JSON.") var json = false

        func validate() throws {
            guard VoiceLanguage(rawValue: language) != nil else { throw ValidationError("--language is fr or en, not '\(language)'") }
        }

        /// Sends the request and shows the answer (or exits with the refusal); the answer.
        @discardableResult
        func send(_ request: NaviRequest, show: (JSON) -> Void) -> JSON {
            let reply = askBackend(options.socket, .navi(request, language: VoiceLanguage(rawValue: language) ?? .en))
            if json { print(reply.text) }
            guard reply["ok"]?.boolValue == true else {
                let codes = (reply["statusCodes"]?.arrayValue ?? []).compactMap { $0.integer() }.map(String.init).joined(separator: ", ")
                let code = reply["error"]?.stringValue ?? "refused"
                die("refused: \(code)\(codes.isEmpty ? "" : " (\(codes))"): \(reply["message"]?.stringValue ?? "")", code: 75)
            }
            if !json { show(reply) }
            return reply
        }
    }

    static func place(_ text: String, _ what: String) throws -> NaviPlace {
        guard let p = NaviPlace(text: text) else {
            throw ValidationError("\(what) '\(text)' is not a place: here, LAT,LON (within ±90, ±180) or a name of up to \(NaviRequest.maximumTextLength) characters")
        }
        return p
    }

    struct Route: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The quickest route, with the traffic on it.")
        @OptionGroup var common: Common
        @Option(help: "Where from (default: here).") var from = "here"
        @Option(help: "Where to.") var to: String
        @Option(help: ArgumentHelp("Write the route's points to this file (LAT,LON lines) for the simulated car to drive: tcu-car do route FILE.",
                                   valueName: "file"))
        var saveRoute: String?

        func run() throws {
            let request = NaviRequest.route(from: try NaviCommand.place(from, "--from"), to: try NaviCommand.place(to, "--to"))
            let reply = common.send(request) { reply in showRoute(reply["route"]) }
            if let saveRoute { save(route: reply["route"], to: saveRoute) }
        }
    }

    struct Nearest: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The nearest fuel stations (with their prices) or parking places.")
        @OptionGroup var common: Common
        @Argument(help: "fuel or parking.") var kind: String
        @Option(help: "Around where (default: here).") var near = "here"
        @Flag(help: "Fuel: the cheapest of the nearest first.") var cheapest = false

        func run() throws {
            guard let k = POIKind(rawValue: kind) else { throw ValidationError("'\(kind)' is not a kind: fuel or parking") }
            common.send(.nearest(k, near: try NaviCommand.place(near, "--near"), cheapest: cheapest)) { reply in showResults(reply["results"]) }
        }
    }

    struct Traffic: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The traffic records (DATEX II) around a place.")
        @OptionGroup var common: Common
        @Option(help: "Around where (default: here).") var near = "here"
        @Option(help: "Within this many metres (100 to 50000).") var radius = 5_000

        func run() throws {
            guard NaviRequest.radiusRange.contains(radius) else { throw ValidationError("--radius is 100 to 50000 metres, not \(radius)") }
            common.send(.traffic(near: try NaviCommand.place(near, "--near"), radiusM: radius)) { reply in
                showRecords(reply["records"])
            }
        }
    }

    struct Say: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The voice control: a sentence in French or English becomes an intent for navigation, audio or media.",
            discussion: "For example: \"trouve une station-service pas chère\", \"navigate to the nearest parking\", \"play radio FIP\", \"volume 12\"."
        )
        @OptionGroup var common: Common
        @Argument(help: "The sentence.") var sentence: String

        func run() throws {
            guard !sentence.isEmpty, sentence.count <= NaviRequest.maximumTextLength else {
                throw ValidationError("a sentence is 1 to \(NaviRequest.maximumTextLength) characters")
            }
            common.send(.say(sentence, near: .here)) { reply in
                print(reply["display"]?.stringValue ?? "")
                if let intent = reply["intent"] { printFlat(intent, prefix: "intent") }
                if let results = reply["results"] { showResults(results) }
                if let route = reply["route"] { showRoute(route) }
                if let records = reply["records"] { showRecords(records) }
            }
        }
    }
}

private func number(_ j: JSON?) -> Double { j?.numberValue ?? 0 }

/// The route's points as a route file the simulated car drives (`tcu-car do route FILE`).
private func save(route: JSON?, to path: String) {
    let points = (route?["geometry"]?.arrayValue ?? []).compactMap { p -> String? in
        guard let a = p.arrayValue, a.count == 2, let lat = a[0].numberValue, let lon = a[1].numberValue else { return nil }
        return "\(lat),\(lon)"
    }
    guard points.count >= 2 else { die("the answer holds no route to save", code: 65) }
    let header = "# \(Int(number(route?["distanceM"]))) m by car, from tcuctl navi route; drive it with: tcu-car do route \(path)\n"
    guard writeFileDurably(path, header + points.joined(separator: "\n") + "\n") else { die("cannot write \(path)", code: 73) }
}

func showRoute(_ route: JSON?) {
    guard let route else { return }
    let minutes = (number(route["durationS"]) / 60).rounded(), delay = number(route["trafficDelayS"])
    print("route: \(Int(number(route["distanceM"]))) m, \(Int(minutes)) min" + (delay > 0 ? " (\(Int(delay)) s of traffic)" : ""))
    for m in route["manoeuvres"]?.arrayValue ?? [] {
        let then = m["then"]?.stringValue ?? ""
        print("  \(Int(number(m["distanceM"]))) m: \(m["instruction"]?.stringValue ?? "")" + (then.isEmpty ? "" : "; \(then)"))
    }
    showRecords(route["traffic"])
}

func showResults(_ results: JSON?) {
    for r in results?.arrayValue ?? [] {
        var line = "\(Int(number(r["distanceM"]))) m  \(r["name"]?.stringValue ?? r["kind"]?.stringValue ?? "")"
        if let a = r["address"]?.stringValue { line += ", \(a)" }
        if let p = r["prices"] {
            line += "  " + ["e5", "e10", "diesel"].compactMap { k in p[k]?.numberValue.map { "\(k) \($0) €" } }.joined(separator: ", ")
        }
        print(line)
    }
}

func showRecords(_ records: JSON?) {
    for r in records?.arrayValue ?? [] {
        print("traffic: \(r["type"]?.stringValue ?? "") \(r["comment"]?.stringValue ?? "") (+\(Int(number(r["delayS"]))) s)")
    }
}
