// Strings Tula writes or takes: one quoting for JSON and YAML (a JSON string is a YAML double-quoted scalar), and the control-character rule.

/// `s` as a JSON string literal, which is also a valid YAML double-quoted scalar: quotes, backslashes and
/// control characters (C0, DEL and C1, which YAML does not allow raw) and the scalars YAML reads specially escaped.
public func jsonString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        // C0, DEL and C1; YAML also reads U+2028/U+2029 as line breaks and U+FEFF as a byte order mark.
        case _ where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028
                     || scalar.value == 0x2029 || scalar.value == 0xFEFF:
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

extension String {
    /// Whether the string holds an ASCII control character (C0 or DEL): refused in names and paths an operator
    /// gives, which end up in logs, file headers and labels.
    public var hasControlCharacters: Bool { unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F } }
}
