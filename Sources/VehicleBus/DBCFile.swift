import Platform
import TelematicsCore

/// Loads and parses a DBC file; errors name the file, line and column.
public func loadDBC(path: String) throws(SystemError) -> DBCDatabase {
    let text = try readTextFile(path)
    do {
        return try DBCParser.parse(text, source: path)
    } catch {
        throw SystemError(.invalidInput, error.description)
    }
}
