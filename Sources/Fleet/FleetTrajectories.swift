import CLibXML2
import Platform
import TelematicsCore

/// The fleet's movement from SUMO: its floating car data (`sumo --fcd-output FILE
/// --fcd-output.geo true`), read as the fleet runs, one time step after the other (the file is
/// in time order; the reader holds one step, never the file). SUMO's vehicle `k` (in the order
/// its ids first appear) drives the shard's cars `k`, `k + vehicles`, ... : a car is on a trip
/// while its vehicle is in the network, at its vehicle's position and speed. At the end of the
/// file the trajectories start again from its beginning.
public final class FleetTrajectories {
    /// Where the data is: the path, or a name for bytes held in memory (the fuzz target's).
    public let path: String
    /// The bytes, for a reader on memory (libxml2 reads them in place: they live as long as this).
    private let memory: UnsafeMutableBufferPointer<CChar>?
    private var reader: OpaquePointer?
    /// SUMO's vehicle id → its number (the order of first appearance).
    private var number: [String: Int] = [:]
    /// The vehicles in the step read last, with their motion.
    public private(set) var present: [Int: FleetCar.Motion] = [:]
    /// The time (s) of the step read last, and of the one read next (nil: the file ended).
    private var pending: (time: Double, vehicles: [Int: FleetCar.Motion])?
    /// Seconds the file covers once (known after the first pass), and where this pass began.
    private var offset = 0.0
    private var lastTime = 0.0
    /// Distinct vehicles seen so far.
    public var vehicles: Int { number.count }

    public convenience init(path: String) throws(SystemError) {
        try self.init(path: path, bytes: nil)
    }

    /// The same data from memory, named `name` in messages.
    public convenience init(bytes: [UInt8], name: String) throws(SystemError) {
        try self.init(path: name, bytes: bytes)
    }

    private init(path: String, bytes: [UInt8]?) throws(SystemError) {
        self.path = path
        if let bytes {
            let m = UnsafeMutableBufferPointer<CChar>.allocate(capacity: max(1, bytes.count))
            for (i, b) in bytes.enumerated() { m[i] = CChar(bitPattern: b) }
            memory = UnsafeMutableBufferPointer(rebasing: m[0..<bytes.count])
        } else {
            memory = nil
        }
        try open()
        // The first step, and every vehicle of the file numbered in order: one pass to count them.
        var count = 0
        while let step = try readStep() {
            count += 1
            _ = step
        }
        guard count > 0, !number.isEmpty else { throw SystemError(.invalidInput, "\(path): no <timestep> with a <vehicle> (expected SUMO's FCD output)") }
        try open()
        pending = try readStep()
    }

    deinit {
        if let reader { xmlFreeTextReader(reader) }
        memory?.deallocate()
    }

    /// The vehicles in the network at `second` (from the fleet's start), each with its motion.
    public func advance(to second: Double) throws(SystemError) {
        while let p = pending, p.time + offset <= second {
            present = p.vehicles
            lastTime = p.time
            pending = try readStep()
            if pending == nil {
                // Again from the beginning, one step after the last.
                offset += lastTime + 1
                try open()
                pending = try readStep()
            }
        }
    }

    /// The motion of car `slot` (nil: its vehicle is not in the network now).
    public func motion(ofCar slot: Int) -> FleetCar.Motion? {
        guard !number.isEmpty else { return nil }
        return present[slot % number.count]
    }

    private func open() throws(SystemError) {
        if let reader { xmlFreeTextReader(reader) }
        // No network, no entities: a trajectory file is data.
        let options = Int32(XML_PARSE_NONET.rawValue | XML_PARSE_NOERROR.rawValue | XML_PARSE_NOWARNING.rawValue)
        if let memory {
            reader = xmlReaderForMemory(memory.baseAddress, Int32(clamping: memory.count), path, nil, options)
        } else {
            reader = xmlReaderForFile(path, nil, options)
        }
        guard reader != nil else { throw SystemError(.invalidInput, "cannot read the trajectories \(path)") }
    }

    /// The next `<timestep>` with its vehicles (nil at the end of the file).
    private func readStep() throws(SystemError) -> (time: Double, vehicles: [Int: FleetCar.Motion])? {
        guard let reader else { return nil }
        var time: Double?
        var vehicles: [Int: FleetCar.Motion] = [:]
        while true {
            let rc = xmlTextReaderRead(reader)
            if rc == 0 { return time.map { ($0, vehicles) } }
            guard rc == 1 else {
                throw SystemError(.invalidInput, "\(path): not well-formed XML near line \(xmlTextReaderGetParserLineNumber(reader))")
            }
            let type = xmlTextReaderNodeType(reader)
            let name = xmlTextReaderConstLocalName(reader).map { String(cString: $0) } ?? ""
            if type == Int32(XML_READER_TYPE_END_ELEMENT.rawValue), name == "timestep", let time { return (time, vehicles) }
            guard type == Int32(XML_READER_TYPE_ELEMENT.rawValue) else { continue }
            // The element's own line (the parser's may be further on: it reads ahead).
            let line = xmlTextReaderCurrentNode(reader).map { xmlGetLineNo($0) } ?? Int(xmlTextReaderGetParserLineNumber(reader))
            if name == "timestep" {
                guard let t = attribute("time").flatMap(Double.init), t.isFinite, t >= 0, t < 1e9 else {
                    throw SystemError(.invalidInput, "\(path):\(line): <timestep> needs a time in seconds (0 to 10^9)")
                }
                time = t
                if xmlTextReaderIsEmptyElement(reader) == 1 { return (t, vehicles) }
            } else if name == "vehicle", time != nil {
                guard let id = attribute("id"), let x = attribute("x").flatMap(Double.init), let y = attribute("y").flatMap(Double.init),
                      let speed = attribute("speed").flatMap(Double.init) else {
                    throw SystemError(.invalidInput, "\(path):\(line): <vehicle> needs id, x, y and speed")
                }
                // Geographic output (--fcd-output.geo): x is the longitude, y the latitude.
                guard (-180...180).contains(x), (-90...90).contains(y), speed.isFinite, (0...150).contains(speed) else {
                    throw SystemError(.invalidInput, "\(path):\(line): vehicle \(id) at x=\(x) y=\(y) speed=\(speed): expected longitude, latitude (--fcd-output.geo) and m/s")
                }
                let k: Int
                if let known = number[id] { k = known } else { k = number.count; number[id] = k }
                vehicles[k] = FleetCar.Motion(latitude: y, longitude: x, speedKmh: speed * 3.6)
            }
        }
    }

    private func attribute(_ name: String) -> String? {
        guard let reader, let v = xmlTextReaderGetAttribute(reader, name) else { return nil }
        defer { tcu_xml_free(v) }
        return String(cString: v)
    }
}
