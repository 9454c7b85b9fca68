// Bounds a config's size and nesting with libyaml's event parser before Yams composes (recursively) a node tree.
import CYaml

/// Limits on config text, checked before the recursive parts of YAML loading run.
///
/// Yams composes a node tree by recursion, and so does any walk of it: a file of 5,000 nested `[` (or `{a:`)
/// overflowed the stack and killed the process (on `ctl reload`, the running appliance). libyaml's own
/// parser is a state machine with heap stacks, so its event stream can be read to any depth safely; this
/// reads it once and refuses a file that nests deeper than `maxDepth` collections, counting what an alias
/// brings in where it is used, before anything recursive sees the text.
public enum YAMLBounds {
    /// Deepest collection nesting a config may have. A real config nests 5 deep (top mapping, vips,
    /// a VIP, backends, a backend); 64 leaves room for any sensible layout and is far from the stack.
    public static let maxDepth = 64
    /// Largest config file, bytes. 256 VIPs with 4096 backends take well under 1 MiB of YAML.
    public static let maxBytes = 4 << 20
    /// Most alias uses (`*name`) a config may have; each one copies a subtree when Yams composes it.
    public static let maxAliases = 1024

    /// Throws `file:line: reason` when `yaml` is larger, deeper or more aliased than the limits. Syntax errors
    /// are left to Yams, which reports them with more context.
    public static func check(_ yaml: String, file: String) throws(ConfigError) {
        let bytes = Array(yaml.utf8)
        guard bytes.count <= maxBytes else {
            throw ConfigError(file: file, line: 1,
                              reason: "the config is \(bytes.count) bytes; at most \(maxBytes) (\(maxBytes >> 20) MiB) are read")
        }
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw ConfigError(file: file, line: 1, reason: "cannot start the YAML parser (out of memory)")
        }
        defer { yaml_parser_delete(&parser) }
        try bytes.withUnsafeBufferPointer { (buffer) throws(ConfigError) in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            try walk(&parser, file: file)
        }
    }

    /// One open collection: the depth it opened at, the deepest level reached inside it, and its anchor.
    private struct Open {
        var depth: Int
        var deepest: Int
        var anchor: String?
    }

    private static func walk(_ parser: inout yaml_parser_t, file: String) throws(ConfigError) {
        var open: [Open] = []
        /// How many levels each anchored node spans (a scalar spans 0), so an alias counts for what it copies.
        var anchorSpan: [String: Int] = [:]
        var aliases = 0
        var event = yaml_event_t()
        while true {
            guard yaml_parser_parse(&parser, &event) == 1 else { return }   // a syntax error: Yams reports it
            defer { yaml_event_delete(&event) }
            let line = Int(event.start_mark.line) + 1
            let depth = open.count
            func reach(_ level: Int) throws(ConfigError) {
                guard level <= maxDepth else {
                    throw ConfigError(file: file, line: line, reason: "nesting deeper than \(maxDepth) levels")
                }
                if !open.isEmpty { open[open.count - 1].deepest = max(open[open.count - 1].deepest, level) }
            }
            switch event.type {
            case YAML_STREAM_END_EVENT:
                return
            case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                let anchor = event.type == YAML_SEQUENCE_START_EVENT
                    ? event.data.sequence_start.anchor : event.data.mapping_start.anchor
                try reach(depth + 1)
                open.append(Open(depth: depth + 1, deepest: depth + 1, anchor: anchor.map { String(cString: $0) }))
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                guard let closed = open.popLast() else { return }
                if let anchor = closed.anchor { anchorSpan[anchor] = closed.deepest - closed.depth + 1 }
                if !open.isEmpty { open[open.count - 1].deepest = max(open[open.count - 1].deepest, closed.deepest) }
            case YAML_SCALAR_EVENT:
                if let anchor = event.data.scalar.anchor { anchorSpan[String(cString: anchor)] = 0 }
            case YAML_ALIAS_EVENT:
                aliases += 1
                guard aliases <= maxAliases else {
                    throw ConfigError(file: file, line: line, reason: "more than \(maxAliases) aliases (*name)")
                }
                let name = event.data.alias.anchor.map { String(cString: $0) } ?? ""
                try reach(depth + (anchorSpan[name] ?? 0))
            default:
                break
            }
        }
    }
}
