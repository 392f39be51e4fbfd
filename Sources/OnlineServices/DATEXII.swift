import CLibXML2
import TelematicsCore

/// One DATEX II situation record (the EU's format for traffic data, version 3): what it is,
/// where (a point), how much delay it adds and what the public is told.
public struct TrafficRecord: Sendable, Equatable {
    public var id: String
    /// Its type without the namespace: MaintenanceWorks, Accident, AbnormalTraffic, ...
    public var type: String
    public var severity: String?
    public var at: GeoPoint
    /// Seconds a vehicle passing it loses.
    public var delayS: Int
    public var comment: String?

    public var json: JSON {
        var o: [(String, JSON)] = [("id", .string(id)), ("type", .string(type)), ("at", at.json), ("delayS", .number(Double(delayS)))]
        if let severity { o.append(("severity", .string(severity))) }
        if let comment { o.append(("comment", .string(comment))) }
        return .object(o)
    }
}

/// Reads a DATEX II v3 SituationPublication: every active `situationRecord` with a point
/// location (`pointByCoordinates`). Records that are suspended, or whose location is not a
/// point, are skipped; a document that is not a publication is refused with the reason.
public enum DATEXII {
    public static let maximumBytes = 8 << 20

    public static func parse(_ bytes: [UInt8]) throws(NaviError) -> [TrafficRecord] {
        guard bytes.count <= maximumBytes else { throw NaviError("traffic", "the DATEX II publication is over \(maximumBytes) bytes") }
        // No network, no entities from outside, no DTD loading: the document alone.
        let options = Int32(XML_PARSE_NONET.rawValue | XML_PARSE_NOERROR.rawValue | XML_PARSE_NOWARNING.rawValue)
        let doc = bytes.withUnsafeBufferPointer { b in
            b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { xmlReadMemory($0, Int32(b.count), "traffic.xml", nil, options) }
        }
        guard let doc else {
            let e = xmlGetLastError()
            let line = e.map { Int($0.pointee.line) } ?? 0
            let message = e.flatMap { $0.pointee.message }.map { String(cString: $0).trimmingNewline } ?? "not XML"
            throw NaviError("traffic", "the DATEX II publication is not well-formed XML (line \(line): \(message))")
        }
        defer { xmlFreeDoc(doc) }
        guard let root = xmlDocGetRootElement(doc) else { throw NaviError("traffic", "the DATEX II publication is empty") }
        let rootType = attribute(root, "type").map(localPart)
        guard localName(root) == "payload" || localName(root) == "d2LogicalModel", rootType == nil || rootType == "SituationPublication" else {
            throw NaviError("traffic", "expected a DATEX II SituationPublication, found <\(localName(root))> of type \(rootType ?? "none")")
        }
        var records: [TrafficRecord] = []
        for situation in descendants(root, named: "situation") {
            let severity = descendants(situation, named: "overallSeverity").first.flatMap(text)
            for r in descendants(situation, named: "situationRecord") {
                let status = descendants(r, named: "validityStatus").first.flatMap(text)
                if status == "suspended" { continue }
                guard let point = descendants(r, named: "pointCoordinates").first,
                      let lat = descendants(point, named: "latitude").first.flatMap(text).flatMap(Double.init),
                      let lon = descendants(point, named: "longitude").first.flatMap(text).flatMap(Double.init),
                      lat.isFinite, lon.isFinite, abs(lat) <= 90, abs(lon) <= 180 else { continue }
                let delay = descendants(r, named: "delayTimeValue").first.flatMap(text).flatMap(Double.init)
                let delayS = delay.map { $0.isFinite && $0 > 0 ? Int(min($0, 86_400)) : 0 } ?? 0
                records.append(TrafficRecord(
                    id: attribute(r, "id") ?? "record\(records.count + 1)", type: attribute(r, "type").map(localPart) ?? "SituationRecord",
                    severity: severity, at: GeoPoint(latitude: lat, longitude: lon), delayS: delayS,
                    comment: descendants(r, named: "generalPublicComment").first.flatMap { descendants($0, named: "value").first }.flatMap(text)))
            }
        }
        return records
    }

    // libxml2's tree, by local names (DATEX II spreads its elements over several namespaces).

    static func localName(_ node: UnsafeMutablePointer<xmlNode>) -> String {
        node.pointee.name.map { String(cString: $0) } ?? ""
    }

    static func localPart(_ qualified: String) -> String {
        qualified.split(separator: ":").last.map(String.init) ?? qualified
    }

    static func attribute(_ node: UnsafeMutablePointer<xmlNode>, _ name: String) -> String? {
        var a = node.pointee.properties
        while let attr = a {
            if let n = attr.pointee.name, String(cString: n) == name, let value = xmlNodeGetContent(UnsafeMutablePointer(OpaquePointer(attr))) {
                defer { tcu_xml_free(value) }
                return String(cString: value)
            }
            a = attr.pointee.next
        }
        return nil
    }

    static func text(_ node: UnsafeMutablePointer<xmlNode>) -> String? {
        guard let c = xmlNodeGetContent(node) else { return nil }
        defer { tcu_xml_free(c) }
        let s = String(cString: c).trimmingNewline
        return s.isEmpty ? nil : s
    }

    /// Every element below `node` (depth first, in document order) with this local name.
    static func descendants(_ node: UnsafeMutablePointer<xmlNode>, named name: String) -> [UnsafeMutablePointer<xmlNode>] {
        var out: [UnsafeMutablePointer<xmlNode>] = []
        var stack: [UnsafeMutablePointer<xmlNode>] = []
        var child = node.pointee.children
        while let c = child { stack.append(c); child = c.pointee.next }
        stack.reverse()
        while let n = stack.popLast() {
            guard n.pointee.type == XML_ELEMENT_NODE else { continue }
            if localName(n) == name { out.append(n) }
            var kids: [UnsafeMutablePointer<xmlNode>] = []
            var k = n.pointee.children
            while let c = k { kids.append(c); k = c.pointee.next }
            stack.append(contentsOf: kids.reversed())
        }
        return out
    }
}

extension String {
    var trimmingNewline: String {
        String(self.drop(while: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" })
            .reversed().drop(while: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }).reversed())
    }
}
