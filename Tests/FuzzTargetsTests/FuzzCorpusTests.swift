import FuzzTargets
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Every committed fuzz input (`Fuzz/corpus/TARGET/`: the seeds, and each crash libFuzzer
/// found, kept as a regression test) runs through its target without a trap.
@Suite("Fuzz corpora")
struct FuzzCorpusTests {
    static let root: String = {
        var path = #filePath
        for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
        return path + "/Fuzz/corpus"
    }()

    static func files(_ target: FuzzTarget) -> [String] {
        let dir = root + "/" + target.rawValue
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if !name.hasPrefix(".") { names.append(dir + "/" + name) }
        }
        return names.sorted()
    }

    static func read(_ path: String) -> [UInt8] {
        guard let f = fopen(path, "rb") else { return [] }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&buffer, 1, buffer.count, f)
            if n <= 0 { break }
            bytes += buffer[..<n]
        }
        return bytes
    }

    @Test("every committed input of the target runs without a trap", arguments: FuzzTarget.allCases)
    func corpus(_ target: FuzzTarget) {
        let files = Self.files(target)
        #expect(!files.isEmpty, "Fuzz/corpus/\(target.rawValue) has no seed")
        for f in files { target.run(Self.read(f)) }
    }
}
