// libFuzzer's entry point over the FuzzTargets: `make fuzz` builds this with
// `--sanitize=fuzzer -Xswiftc -DFUZZING` and runs `tcu-fuzz CORPUS_DIR` with TCU_FUZZ_TARGET set
// to a target's name (docs/security.md). Built normally, it only says how to use it.
#if canImport(Glibc)
import Glibc
#endif
import FuzzTargets

#if FUZZING
let target: FuzzTarget = {
    guard let name = getenv("TCU_FUZZ_TARGET").map({ String(cString: $0) }), let t = FuzzTarget(rawValue: name) else {
        fatalError("set TCU_FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return t
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    target.run(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
#else
@main
enum FuzzUsage {
    static func main() {
        print("tcu-fuzz: built without libFuzzer. Run `make fuzz` (or `make fuzz-short`); targets: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))")
    }
}
#endif
