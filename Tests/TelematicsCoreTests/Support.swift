#if canImport(Glibc)
import Glibc
#endif
@testable import TelematicsCore

/// The project's own files, read once (the core does no IO; its tests may).
enum ProjectFiles {
    static let root: String = {
        var path = #filePath
        for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
        return path
    }()

    static func read(_ relative: String) -> String {
        guard let f = fopen(root + "/" + relative, "r") else { fatalError("cannot open \(relative)") }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n == 0 { break }
            bytes += buf[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static let dbc = read("hw/vehicle.dbc")
    static let profile = read("hw/vehicle-profile.conf")
    static let database: DBCDatabase = try! DBCParser.parse(dbc)
}
