/// One decoded frame as a JSON line, written straight into a string (this runs per frame
/// in `tcuctl can decode`, so it avoids building a JSON tree).
public enum FrameJSON {
    public static func write(_ frame: CANFrame, decoder: FrameDecoder, scratch: inout [DecodedSignal], into out: inout String) {
        let db = decoder.database
        out += "{\"t\":" + trimmedTime(frame.timestamp)
        out += ",\"iface\":"
        JSON.quote(frame.interface, into: &out)
        out += ",\"id\":\"" + hex(frame.id) + "\",\"extended\":" + (frame.isExtended ? "true" : "false")
        if frame.isError {
            out += ",\"error\":true,\"data\":\"" + hexBytes(frame.data) + "\"}"
            return
        }
        if frame.isRemote {
            out += ",\"remote\":true,\"message\":"
            if let m = db.message(id: frame.id, isExtended: frame.isExtended) { JSON.quote(m.name, into: &out) } else { out += "null" }
            out += "}"
            return
        }
        guard let mi = decoder.messageIndex(id: frame.id, isExtended: frame.isExtended) else {
            out += ",\"message\":null,\"data\":\"" + hexBytes(frame.data) + "\"}"
            return
        }
        let m = db.messages[mi]
        out += ",\"message\":"
        JSON.quote(m.name, into: &out)
        if frame.data.count < m.length { out += ",\"truncated\":true" }
        scratch.removeAll(keepingCapacity: true)
        decoder.decode(message: mi, data: frame.data, into: &scratch)
        out += ",\"signals\":{"
        var first = true
        for d in scratch {
            if !first { out += "," }
            first = false
            JSON.quote(m.signals[d.index].name, into: &out)
            out += ":" + JSON.format(d.value)
        }
        out += "},\"labels\":{"
        first = true
        for d in scratch {
            guard let label = m.signals[d.index].label(bits: d.bits) else { continue }
            if !first { out += "," }
            first = false
            JSON.quote(m.signals[d.index].name, into: &out)
            out += ":"
            JSON.quote(label, into: &out)
        }
        out += "}}"
    }

    /// The receive time with microseconds, exact (no binary rounding).
    static func trimmedTime(_ t: Timestamp) -> String {
        let text = t.candumpText
        var s = Substring(text)
        while s.first == "0", s.count > 1, s.dropFirst().first != "." { s = s.dropFirst() }
        return String(s)
    }
}
