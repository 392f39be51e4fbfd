/// The natural-language voice control of the Online infotainment services: a sentence in
/// French or English (text standing in for speech) becomes an intent for navigation, audio or
/// media. Rules over the words, not a model: each intent has its trigger words in both
/// languages, tried in a fixed order (a navigation trigger first, as "navigate to the nearest
/// parking" also names parking). A sentence with no intent is nil.
public enum VoiceIntent: Sendable, Equatable {
    /// Route to a named place or coordinates.
    case navigate(NaviPlace)
    /// Route to the nearest (or the cheapest nearby) POI of a kind.
    case navigateNearest(POIKind, cheapest: Bool)
    /// Show the nearest POIs of a kind.
    case findNearest(POIKind, cheapest: Bool)
    /// Traffic around the car.
    case traffic
    case playRadio(String)
    /// The audio volume, 0 to 30.
    case volume(Int)
    case media(MediaAction)

    public enum MediaAction: String, Sendable, CaseIterable {
        case pause, resume, next, previous
    }

    public static let volumeRange = 0...30

    /// navigation, audio or media.
    public var domain: String {
        switch self {
        case .navigate, .navigateNearest, .findNearest, .traffic: "navigation"
        case .playRadio, .volume: "audio"
        case .media: "media"
        }
    }

    /// Whether it needs the car's position (a route from the car, what is near it).
    public var needsPosition: Bool {
        switch self {
        case .navigate, .navigateNearest, .findNearest, .traffic: true
        case .playRadio, .volume, .media: false
        }
    }

    public var json: JSON {
        var o: [(String, JSON)] = [("domain", .string(domain))]
        switch self {
        case .navigate(let p): o += [("intent", .string("navigate")), ("to", p.json)]
        case .navigateNearest(let k, let c): o += [("intent", .string("navigateNearest")), ("kind", .string(k.rawValue)), ("cheapest", .bool(c))]
        case .findNearest(let k, let c): o += [("intent", .string("findNearest")), ("kind", .string(k.rawValue)), ("cheapest", .bool(c))]
        case .traffic: o += [("intent", .string("traffic"))]
        case .playRadio(let s): o += [("intent", .string("playRadio")), ("station", .string(s))]
        case .volume(let v): o += [("intent", .string("volume")), ("level", .number(Double(v)))]
        case .media(let a): o += [("intent", .string("media")), ("action", .string(a.rawValue))]
        }
        return .object(o)
    }

    /// What the head unit shows for an intent it carries out itself (audio and media).
    public func display(language: VoiceLanguage) -> String {
        let fr = language == .fr
        switch self {
        case .playRadio(let s): return fr ? "Radio : \(s)" : "Radio: \(s)"
        case .volume(let v): return "Volume \(v)"
        case .media(let a):
            switch a {
            case .pause: return fr ? "Lecture en pause" : "Paused"
            case .resume: return fr ? "Lecture" : "Playing"
            case .next: return fr ? "Titre suivant" : "Next track"
            case .previous: return fr ? "Titre précédent" : "Previous track"
            }
        case .traffic: return fr ? "Info trafic" : "Traffic"
        case .navigate(let p):
            let name: String = switch p {
            case .named(let n): n
            case .coordinates(let c): c.description
            case .here: fr ? "ici" : "here"
            }
            return fr ? "Itinéraire vers \(name)" : "Route to \(name)"
        case .navigateNearest(let k, _), .findNearest(let k, _):
            return switch (k, fr) {
            case (.fuel, true): "Stations-service"
            case (.fuel, false): "Fuel stations"
            case (.parking, true): "Parkings"
            case (.parking, false): "Parking"
            }
        }
    }

    /// The intent of a sentence and the language it was said in; nil when it holds none.
    public static func parse(_ sentence: String) -> (intent: VoiceIntent, language: VoiceLanguage)? {
        let original = Array(sentence.prefix(NaviRequest.maximumTextLength))
        let folded = original.map(fold)
        // The words, and where each one is in the sentence.
        var words: [String] = [], spans: [Range<Int>] = []
        var i = 0
        while i < folded.count {
            if folded[i] == " " { i += 1; continue }
            var j = i
            while j < folded.count, folded[j] != " " { j += 1 }
            words.append(String(folded[i..<j]))
            spans.append(i..<j)
            i = j
        }
        guard !words.isEmpty else { return nil }
        /// The sentence as typed from word `k` to its end.
        func typed(from k: Int) -> String { String(original[spans[k].lowerBound..<spans[spans.count - 1].upperBound]) }
        let language = detectLanguage(words: words, original: original)
        func has(_ phrase: String) -> Bool { find(phrase, in: words) != nil }
        func hasAny(_ phrases: [String]) -> Bool { phrases.contains(where: has) }
        let cheapest = hasAny(cheapWords)

        // Navigation: a trigger, then where to.
        for trigger in navigateTriggers {
            guard let end = find(trigger, in: words) else { continue }
            let rest = Array(words[end...])
            if let kind = poiKind(rest) { return (.navigateNearest(kind, cheapest: cheapest), language) }
            // The destination as typed, without its leading articles.
            var first = end
            while first < words.count, articles.contains(words[first]) { first += 1 }
            guard first < words.count else { return nil }
            let destination = typed(from: first)
            guard let place = NaviPlace(text: destination) else { return nil }
            return (.navigate(place), language)
        }
        if let kind = poiKind(words) { return (.findNearest(kind, cheapest: cheapest), language) }
        if hasAny(trafficWords) { return (.traffic, language) }
        if let r = words.firstIndex(of: "radio") {
            // "play radio FIP", "mets la radio FIP", "play FIP radio"
            var first = r + 1
            while first < words.count, articles.contains(words[first]) { first += 1 }
            if first < words.count { return (.playRadio(typed(from: first).uppercased()), language) }
            var start = 0
            while start < r, playWords.contains(words[start]) || articles.contains(words[start]) { start += 1 }
            guard start < r else { return nil }
            return (.playRadio(String(original[spans[start].lowerBound..<spans[r - 1].upperBound]).uppercased()), language)
        }
        if words.contains("volume") {
            let numbers = words.compactMap { Int($0) }
            guard numbers.count == 1, let v = numbers.first, volumeRange.contains(v) else { return nil }
            return (.volume(v), language)
        }
        for (action, triggers) in mediaTriggers where hasAny(triggers) {
            return (.media(action), language)
        }
        return nil
    }

    // MARK: - Words

    static let articles: Set<String> = ["the", "a", "an", "to", "la", "le", "les", "l", "un", "une", "au", "a", "vers", "de", "du", "des", "d"]
    static let navigateTriggers = ["navigate to", "navigue vers", "navigation vers", "take me to", "drive to", "go to", "route to",
                                   "directions to", "emmene moi", "conduis moi", "guide moi", "aller a", "aller au", "aller vers",
                                   "itineraire vers", "itineraire pour", "va a", "va au"]
    static let cheapWords = ["pas cher", "pas chere", "moins cher", "moins chere", "la moins chere", "bon marche", "cheap", "cheapest", "cheaper"]
    static let fuelWords = ["station service", "stations service", "station essence", "essence", "carburant", "gazole", "diesel",
                            "gas station", "petrol", "fuel", "gas", "refuel", "faire le plein"]
    static let parkingWords = ["parking", "parkings", "se garer", "garer", "stationner", "stationnement", "park", "car park", "parking lot"]
    static let trafficWords = ["trafic", "traffic", "circulation", "bouchon", "bouchons", "embouteillage", "embouteillages", "jam", "jams"]
    static let playWords: Set<String> = ["play", "put", "on", "joue", "mets", "met", "ecouter", "ecoute", "lance", "allume"]
    static let mediaTriggers: [(MediaAction, [String])] = [
        (.pause, ["pause", "stop the music", "stop music", "arrete la musique", "coupe la musique"]),
        (.next, ["next", "skip", "suivant", "suivante"]),
        (.previous, ["previous", "precedent", "precedente"]),
        (.resume, ["resume", "reprends", "reprendre", "continue", "play music", "joue de la musique", "mets de la musique"]),
    ]
    static let frenchMarkers: Set<String> = ["trouve", "trouver", "mets", "joue", "emmene", "conduis", "aller", "vers", "une", "le", "la",
                                             "pas", "chere", "cher", "suivant", "suivante", "precedent", "circulation", "itineraire",
                                             "ecouter", "plus", "proche", "stationnement", "garer", "moi", "info", "quel", "est"]

    static func poiKind(_ words: [String]) -> POIKind? {
        if fuelWords.contains(where: { find($0, in: words) != nil }) { return .fuel }
        if parkingWords.contains(where: { find($0, in: words) != nil }) { return .parking }
        return nil
    }

    /// Where the phrase's words occur in `words`: the index after them, else nil.
    static func find(_ phrase: String, in words: [String]) -> Int? {
        let p = phrase.split(separator: " ").map(String.init)
        guard !p.isEmpty, words.count >= p.count else { return nil }
        for i in 0...(words.count - p.count) where Array(words[i..<(i + p.count)]) == p {
            return i + p.count
        }
        return nil
    }

    /// The language a sentence is in (French or English), intent or not.
    public static func language(of sentence: String) -> VoiceLanguage {
        let original = Array(sentence.prefix(NaviRequest.maximumTextLength))
        return detectLanguage(words: String(original.map(fold)).split(separator: " ").map(String.init), original: original)
    }

    static func detectLanguage(words: [String], original: [Character]) -> VoiceLanguage {
        if original.contains(where: { "àâäéèêëîïôöùûüçœ".contains($0) }) { return .fr }
        let score = words.filter(frenchMarkers.contains).count
        return score > 0 ? .fr : .en
    }

    /// One character folded: lower case, without its accent; punctuation is a space. One
    /// character for one, so that positions in the folded text are positions in the original.
    public static func fold(_ c: Character) -> Character {
        let lower = Character(c.lowercased().count == 1 ? c.lowercased() : String(c))
        switch lower {
        case "à", "â", "ä", "á": return "a"
        case "é", "è", "ê", "ë": return "e"
        case "î", "ï", "í": return "i"
        case "ô", "ö", "ó": return "o"
        case "ù", "û", "ü", "ú": return "u"
        case "ç": return "c"
        case "œ": return "o"
        case "'", "’", ",", ".", "!", "?", ";", ":", "-", "\"", "«", "»", "\t", "\n", "\r": return " "
        default: return lower
        }
    }

}

public enum VoiceLanguage: String, Sendable {
    case fr, en
}

/// Text as the voice control and the place search compare it: lower case, without accents,
/// punctuation as spaces, words separated by one space.
public func foldedForSearch(_ text: String) -> String {
    String(text.map(VoiceIntent.fold)).split(separator: " ").joined(separator: " ")
}
